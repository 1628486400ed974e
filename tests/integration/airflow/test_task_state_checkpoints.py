"""The LangGraph checkpoint saver over a task instance's state store: a retried attempt
resumes where the failed one stopped, and the stored value stays one small JSON document."""

from __future__ import annotations

import json
import operator
from typing import Annotated, Any, TypedDict

import pytest
from langgraph.graph import END, START, StateGraph

from airflow_provider_orchestra.operators.checkpoint import KEY_PREFIX, TaskStateCheckpointSaver


class StateStore:
    """What ``context["task_state_store"]`` offers, kept in a dict; values must be JSON."""

    def __init__(self):
        self.values: dict[str, Any] = {}

    def get(self, key: str, default: Any = None) -> Any:
        return json.loads(self.values[key]) if key in self.values else default

    def set(self, key: str, value: Any, **kwargs: Any) -> None:
        assert value is not None
        self.values[key] = json.dumps(value)

    def delete(self, key: str) -> None:
        self.values.pop(key, None)


class Steps(TypedDict):
    done: Annotated[list[str], operator.add]


def three_step_graph(calls: list[str], failing: set[str]):
    def step(name: str):
        def run(state: Steps) -> dict:
            calls.append(name)
            if name in failing:
                raise RuntimeError(f"{name} was killed")
            return {"done": [name]}

        return run

    graph = StateGraph(Steps)
    for name in ("read", "check", "write"):
        graph.add_node(name, step(name))
    graph.add_edge(START, "read")
    graph.add_edge("read", "check")
    graph.add_edge("check", "write")
    graph.add_edge("write", END)
    return graph


THREAD = {"configurable": {"thread_id": "dag/run/orchestra.round_1.alpha/0"}}


def test_a_retry_resumes_at_the_failed_step():
    store, calls, failing = StateStore(), [], {"check"}
    graph = three_step_graph(calls, failing)
    with pytest.raises(RuntimeError, match="check was killed"):
        graph.compile(checkpointer=TaskStateCheckpointSaver(store)).invoke({"done": []}, THREAD)
    assert calls == ["read", "check"]

    failing.clear()  # the next attempt: a new process, the same task state store
    final = graph.compile(checkpointer=TaskStateCheckpointSaver(store)).invoke(None, THREAD)
    assert final["done"] == ["read", "check", "write"]
    assert calls == ["read", "check", "check", "write"]  # read was not redone


def test_only_the_latest_checkpoint_is_kept_and_deleting_the_thread_clears_it():
    store, calls = StateStore(), []
    saver = TaskStateCheckpointSaver(store)
    graph = three_step_graph(calls, set()).compile(checkpointer=saver)
    graph.invoke({"done": []}, THREAD)
    [key] = store.values
    assert key == KEY_PREFIX + THREAD["configurable"]["thread_id"]
    document = json.loads(store.values[key])
    assert list(document["namespaces"]) == [""]  # one checkpoint, not the history
    latest = saver.get_tuple(THREAD)
    assert latest.checkpoint["channel_values"]["done"] == ["read", "check", "write"]
    assert [t.config for t in saver.list(THREAD)] == [latest.config]
    older = {
        "configurable": {
            **THREAD["configurable"],
            "checkpoint_id": latest.parent_config["configurable"]["checkpoint_id"],
        }
    }
    assert saver.get_tuple(older) is None
    saver.delete_thread(THREAD["configurable"]["thread_id"])
    assert store.values == {} and saver.get_tuple(THREAD) is None


def test_a_specialist_branch_checkpoints_into_the_store(tmp_path):
    """A real specialist run through the factory: its subgraph state goes to the store,
    as descriptors (the stored document stays small while the data does not)."""
    from airflow_provider_orchestra import runtime
    from airflow_provider_orchestra.sample import generate_sample_data, sample_config

    generate_sample_data(tmp_path / "data", orders=3_000, events=500)
    config = runtime.load_config({**sample_config(tmp_path / "data", tmp_path / "out"), "sync_points": {}})
    factory = runtime.open_factory(config=config)
    analysis = runtime.analyze_run(config, runtime.describe_batches(config), factory)
    [task] = [
        t for t in runtime.plan_tasks(config, analysis.allocations, run_id="r1") if t.branch_id == "orders_validation"
    ]
    store = StateStore()
    saver = TaskStateCheckpointSaver(store)
    thread = "dag/r1/orchestra.round_1.data_validation_branch_beta/0"
    result = runtime.execute_branch(task, factory=factory, holder=thread, saver=saver, thread_id=thread)
    assert result.status == "success", result.error
    stored = store.values[KEY_PREFIX + thread]
    assert len(stored) < 64_000  # one state of descriptors; 3,000 rows of orders are not in it
    again = runtime.execute_branch(task, factory=factory, holder=thread, saver=saver, thread_id=thread)
    assert again.outputs == result.outputs  # the finished thread answers without redoing the work
