"""A LangGraph checkpoint saver over Airflow's per-task-instance state store.

Airflow 3.3 keeps a small key/value store per task instance that survives the task's
retries within a run (``context["task_state_store"]``). A specialist's subgraph state is
small by construction (descriptors, never rows), so its latest checkpoint and that
checkpoint's pending writes fit in one value per thread: a retried attempt resumes where
the failed one stopped, with no extra storage to configure.

Only the latest checkpoint of each namespace is kept (older ones are never read on
resume), which bounds the stored value by the size of one state.
"""

from __future__ import annotations

import base64
import threading
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any, Protocol

from langgraph.checkpoint.base import (
    WRITES_IDX_MAP,
    BaseCheckpointSaver,
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
    get_checkpoint_id,
    get_checkpoint_metadata,
    writes_sort_key,
)
from langchain_core.runnables import RunnableConfig

KEY_PREFIX = "orchestra.checkpoint:"


class KeyValueStore(Protocol):
    """What the saver needs of ``context["task_state_store"]``."""

    def get(self, key: str, default: Any = None) -> Any: ...
    def set(self, key: str, value: Any, **kwargs: Any) -> None: ...
    def delete(self, key: str) -> None: ...


def _pack(typed: tuple[str, bytes]) -> list[str]:
    kind, data = typed
    return [kind, base64.b64encode(data).decode("ascii")]


def _unpack(packed: Sequence[str]) -> tuple[str, bytes]:
    return packed[0], base64.b64decode(packed[1])


class TaskStateCheckpointSaver(BaseCheckpointSaver):
    """Keeps each thread's latest checkpoint (per namespace) and its pending writes in
    ``store`` under ``orchestra.checkpoint:<thread_id>``.

    ``set_kwargs`` go to every ``store.set`` (e.g. ``retention``).
    """

    def __init__(self, store: KeyValueStore, *, set_kwargs: dict[str, Any] | None = None, serde=None):
        super().__init__(serde=serde)
        self.store = store
        self.set_kwargs = dict(set_kwargs or {})
        # LangGraph writes from worker threads; each read-modify-write of the thread's
        # document must be whole, and Airflow's in-process (dag.test) comms are not
        # thread-safe.
        self._lock = threading.RLock()

    # ------------------------------------------------------------------ storage

    @staticmethod
    def _key(thread_id: str) -> str:
        return f"{KEY_PREFIX}{thread_id}"

    def _load(self, thread_id: str) -> dict[str, Any]:
        doc = self.store.get(self._key(thread_id))
        return doc if isinstance(doc, dict) else {"namespaces": {}}

    def _save(self, thread_id: str, doc: dict[str, Any]) -> None:
        self.store.set(self._key(thread_id), doc, **self.set_kwargs)

    # ------------------------------------------------------------------ reading

    def _tuple(self, thread_id: str, ns: str, entry: dict[str, Any]) -> CheckpointTuple:
        checkpoint_id = entry["id"]
        writes = sorted(entry.get("writes", []), key=lambda w: writes_sort_key(w[4], w[0], w[1]))
        parent_id = entry.get("parent_id")
        return CheckpointTuple(
            config={"configurable": {"thread_id": thread_id, "checkpoint_ns": ns, "checkpoint_id": checkpoint_id}},
            checkpoint=self.serde.loads_typed(_unpack(entry["checkpoint"])),
            metadata=self.serde.loads_typed(_unpack(entry["metadata"])),
            parent_config=(
                {"configurable": {"thread_id": thread_id, "checkpoint_ns": ns, "checkpoint_id": parent_id}}
                if parent_id
                else None
            ),
            pending_writes=[(w[0], w[2], self.serde.loads_typed(_unpack(w[3]))) for w in writes],
        )

    def get_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        with self._lock:
            return self._get_tuple(config)

    def _get_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        configurable = config["configurable"]
        thread_id = str(configurable["thread_id"])
        ns = configurable.get("checkpoint_ns", "")
        entry = self._load(thread_id)["namespaces"].get(ns)
        if entry is None:
            return None
        wanted = get_checkpoint_id(config)
        if wanted and wanted != entry["id"]:
            return None  # an older checkpoint: not kept
        return self._tuple(thread_id, ns, entry)

    def list(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> Iterator[CheckpointTuple]:
        if config is None or limit == 0:
            return
        found = self.get_tuple(config)
        if found is None:
            return
        if before is not None and (before_id := get_checkpoint_id(before)) and found.checkpoint["id"] >= before_id:
            return
        if filter and any(found.metadata.get(k) != v for k, v in filter.items()):
            return
        yield found

    # ------------------------------------------------------------------ writing

    def put(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        with self._lock:
            return self._put(config, checkpoint, metadata)

    def _put(self, config: RunnableConfig, checkpoint: Checkpoint, metadata: CheckpointMetadata) -> RunnableConfig:
        configurable = config["configurable"]
        thread_id = str(configurable["thread_id"])
        ns = configurable.get("checkpoint_ns", "")
        doc = self._load(thread_id)
        doc["namespaces"][ns] = {
            "id": checkpoint["id"],
            "parent_id": configurable.get("checkpoint_id"),
            "checkpoint": _pack(self.serde.dumps_typed(checkpoint)),
            "metadata": _pack(self.serde.dumps_typed(get_checkpoint_metadata(config, metadata))),
            "writes": [],
        }
        self._save(thread_id, doc)
        return {"configurable": {"thread_id": thread_id, "checkpoint_ns": ns, "checkpoint_id": checkpoint["id"]}}

    def put_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        with self._lock:
            self._put_writes(config, writes, task_id, task_path)

    def _put_writes(
        self, config: RunnableConfig, writes: Sequence[tuple[str, Any]], task_id: str, task_path: str
    ) -> None:
        configurable = config["configurable"]
        thread_id = str(configurable["thread_id"])
        ns = configurable.get("checkpoint_ns", "")
        doc = self._load(thread_id)
        entry = doc["namespaces"].get(ns)
        if entry is None or entry["id"] != configurable.get("checkpoint_id"):
            return  # writes of a checkpoint that is no longer the latest
        stored = {(w[0], w[1]): w for w in entry["writes"]}
        for position, (channel, value) in enumerate(writes):
            idx = WRITES_IDX_MAP.get(channel, position)
            if idx >= 0 and (task_id, idx) in stored:
                continue  # a regular write is recorded once; special ones are replaced
            stored[(task_id, idx)] = [task_id, idx, channel, _pack(self.serde.dumps_typed(value)), task_path]
        entry["writes"] = list(stored.values())
        self._save(thread_id, doc)

    def delete_thread(self, thread_id: str) -> None:
        with self._lock:
            self.store.delete(self._key(str(thread_id)))

    # ------------------------------------------------------------------ async (same calls)

    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        return self.get_tuple(config)

    async def alist(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[CheckpointTuple]:
        for item in self.list(config, filter=filter, before=before, limit=limit):
            yield item

    async def aput(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        return self.put(config, checkpoint, metadata, new_versions)

    async def aput_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        self.put_writes(config, writes, task_id, task_path)

    async def adelete_thread(self, thread_id: str) -> None:
        self.delete_thread(thread_id)
