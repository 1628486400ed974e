"""Checkpointers for the native graph: in memory by default, or a SQLite file / Postgres
database named by a URL (``specialists.checkpoint.make_saver`` opens it and sets Postgres
up once)."""

from __future__ import annotations

import copy
from typing import Any

from langgraph.checkpoint.base import BaseCheckpointSaver
from pydantic import BaseModel
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

from airflow_provider_orchestra.specialists.checkpoint import close_saver, make_saver

__all__ = ["close_saver", "open_checkpointer", "restricted", "state_types"]


def state_types() -> list[tuple[str, str]]:
    """(module, class) of every pydantic model that graph state may hold."""
    from airflow_provider_orchestra.core import models
    from airflow_provider_orchestra.graph import state

    found = []
    for module in (models, state):
        for value in vars(module).values():
            if isinstance(value, type) and issubclass(value, BaseModel) and value.__module__ == module.__name__:
                found.append((value.__module__, value.__name__))
    return sorted(found)


def restricted(saver: BaseCheckpointSaver) -> BaseCheckpointSaver:
    """A shallow copy of ``saver`` whose serializer revives only the workflow's own models
    (and LangGraph's safe types): a checkpoint store someone else can write to cannot make
    this process import arbitrary classes. Savers with a serializer of their own (e.g.
    encrypting) are returned as they are."""
    serde = getattr(saver, "serde", None)
    if type(serde) is not JsonPlusSerializer:
        return saver
    clone = copy.copy(saver)
    clone.serde = JsonPlusSerializer(allowed_msgpack_modules=state_types())
    return clone


def open_checkpointer(target: Any = None) -> BaseCheckpointSaver:
    """``None``/"memory" -> in-memory; a path or URL -> SQLite / Postgres; a saver as is.

    Raises CheckpointStoreError (an OrchestraError) with a one-line reason when the store
    cannot be reached.
    """
    if isinstance(target, BaseCheckpointSaver):
        return target
    return make_saver(target)
