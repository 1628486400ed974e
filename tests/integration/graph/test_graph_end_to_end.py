"""The real graph end to end: real specialists over real files, real checkpointers."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from langgraph.checkpoint.memory import InMemorySaver

from airflow_provider_orchestra import runtime
from airflow_provider_orchestra.core.models import SPECIALISTS, FinalReport
from airflow_provider_orchestra.factory.claims import RunInUseError
from airflow_provider_orchestra.graph import (
    RunExistsError,
    branch_thread_id,
    build_workflow_graph,
    initial_state,
    resume_workflow,
    run_workflow,
)
from airflow_provider_orchestra.sample import sample_config
from graph_test_support import EventLog, validation_batch, workflow_config, write_csv


def test_sample_workflow_runs_all_five_specialists(sample_data, output_dir, factory):
    saver = InMemorySaver()
    events = EventLog()
    outcome = run_workflow(
        sample_config(sample_data, output_dir), checkpoint=saver, thread_id="sample-1", factory=factory, on_event=events.append
    )
    report = outcome.report
    assert outcome.status == report.status == "approved"
    assert report.rounds == 1 and report.workflow_mode in {"parallel", "sequential", "adaptive"}
    assert sorted(b.specialist for b in report.branches) == sorted(SPECIALISTS)
    assert all(b.status == "success" and b.outputs for b in report.branches)
    assert report.merge.success_rate == 1.0
    for category, synthesis in report.merge.categories.items():
        assert synthesis.status == "merged", category
        assert sum(synthesis.source_attribution.values()) == pytest.approx(1.0)

    # Data moved by reference: every output the report names is a real file set with the
    # row count it claims.
    for branch in report.branches:
        main = [o for o in branch.outputs if o.role == "output"]
        for output in main:
            if output.format == "parquet":
                assert pq.read_table(output.uri.removeprefix("file://")).num_rows == output.rows

    # The integrated manifest is the report.
    manifest = Path(report.asset_uri.removeprefix("file://"))
    assert FinalReport.model_validate_json(manifest.read_text()) == report

    # Live progress per branch, and the timeline has the workflow's steps in order.
    for branch in report.branches:
        assert [e["phase"] for e in events.branch(branch.branch_id)][0] == "started"
        assert events.branch(branch.branch_id, "finished")[0]["status"] == "success"
    steps = [e["event"] for e in report.timeline if e.get("source") != "agent_factory"]
    assert steps[:2] == ["data_batch_analysis", "parallel_coordination"]
    assert steps[-4:] == ["synchronization_checkpoint", "branch_merge", "quality_gate", "final_integration"]
    assert {"agent_created", "resources_released"} <= {e["event"] for e in report.timeline}

    # Each specialist checkpointed its subgraph under <thread>/<branch>/<round>.
    for branch in report.branches:
        sub_thread = branch_thread_id("sample-1", branch.branch_id, 1)
        assert list(saver.list({"configurable": {"thread_id": sub_thread}})), sub_thread


def test_graph_state_holds_descriptors_only(sample_data, output_dir, factory):
    graph = build_workflow_graph(sample_config(sample_data, output_dir), factory=factory)
    run = {"configurable": {"thread_id": "state-1"}}
    graph.invoke(initial_state(graph.orchestra_nodes.config, "state-1"), run)
    values = graph.get_state(run).values
    assert values["status"] == "approved"
    assert set(values["completed_processing_branches"]) == {b["batch_id"] for b in sample_config(sample_data, output_dir)["batches"]}
    assert values["workflow_mode"] == values["report"].workflow_mode
    # Rows never enter the state: its serialised size stays small whatever the data size.
    size = len(graph.checkpointer.serde.dumps_typed(values["branch_results"])[1])
    assert size < 5_000 * len(values["branch_results"])


def test_sqlite_checkpoint_finished_run_resumes_to_the_same_report(sample_data, output_dir, factory, tmp_path):
    store = str(tmp_path / "checkpoints.sqlite")
    config = sample_config(sample_data, output_dir)
    first = run_workflow(config, checkpoint=store, thread_id="sq-1", factory=factory)
    assert first.status == "approved"

    events = EventLog()
    again = resume_workflow("sq-1", checkpoint=store, factory=factory, on_event=events.append)
    assert again.report == first.report
    assert events.started() == []  # nothing recomputed

    with pytest.raises(RunExistsError, match="sq-1"):
        run_workflow(config, checkpoint=store, thread_id="sq-1", factory=factory)


def test_sequential_mode_runs_one_branch_at_a_time_in_dependency_order(data_dir, output_dir, factory):
    for name in ("a", "b", "c"):
        write_csv(data_dir / f"{name}.csv", 3_000)
    config = workflow_config(
        [data_dir],
        output_dir,
        [validation_batch(name, f"{name}.csv") for name in ("c", "b", "a")],
        branch_dependencies={"b": ["a"], "c": ["b"]},
    )
    events = EventLog()
    outcome = run_workflow(config, factory=factory, on_event=events.append)
    assert outcome.report.workflow_mode == "sequential"
    assert events.started() == ["a", "b", "c"]
    assert events.max_running() == 1
    assert outcome.status == "approved"


def test_concurrency_never_exceeds_the_analysis_cap(data_dir, output_dir, factory):
    names = [f"part{i}" for i in range(6)]
    for name in names:
        write_csv(data_dir / f"{name}.csv", 2_000, start=1_000_000 * names.index(name))
    config = workflow_config([data_dir], output_dir, [validation_batch(n, f"{n}.csv") for n in names])
    events = EventLog()
    outcome = run_workflow(config, factory=factory, on_event=events.append)
    assert outcome.status == "approved"
    coordination = next(e for e in outcome.report.timeline if e["event"] == "parallel_coordination")
    assert coordination["concurrency"] == 3  # adaptive mode, ledger room for 8
    assert 1 <= events.max_running() <= 3
    assert sorted(events.started()) == sorted(names)


def test_a_thread_id_being_run_is_refused_to_a_second_run_or_resume(data_dir, output_dir, factory, tmp_path):
    write_csv(data_dir / "orders.csv", 200)
    config = workflow_config([data_dir], output_dir, [validation_batch("orders", "orders.csv")])
    store = str(tmp_path / "checkpoints.sqlite")
    started, go_on = threading.Event(), threading.Event()

    def hold_the_run(event):  # keeps the first run going until the others have tried
        if event.get("phase") == "started":
            started.set()
            assert go_on.wait(120)

    # The others come as another process would: their own factory over the same ledger.
    other = runtime.open_factory(str(tmp_path / "ledger.sqlite"))
    with ThreadPoolExecutor(1) as pool:
        first = pool.submit(run_workflow, config, checkpoint=store, thread_id="busy-1", factory=factory, on_event=hold_the_run)
        try:
            assert started.wait(120)
            with pytest.raises(RunInUseError, match="thread id 'busy-1' is being run by another process"):
                run_workflow(config, checkpoint=store, thread_id="busy-1", factory=other)
            with pytest.raises(RunInUseError, match="thread id 'busy-1' is being run by another process"):
                resume_workflow("busy-1", checkpoint=store, factory=other)
        finally:
            go_on.set()
        outcome = first.result(timeout=300)
    assert outcome.status == "approved"
    (branch,) = outcome.report.branches
    main = next(o for o in branch.outputs if o.role == "output")
    assert pq.read_table(main.uri.removeprefix("file://")).num_rows == main.rows == branch.metrics.rows_out == 200
    # Once it ended the thread id is free again: resuming reports the finished run.
    again = resume_workflow("busy-1", checkpoint=store, factory=other)
    assert again.status == "approved" and again.report.run_id == outcome.report.run_id


def test_an_empty_input_ends_its_branch_empty_named_and_left_out_of_the_merge(data_dir, output_dir, factory):
    write_csv(data_dir / "orders.csv", 200)
    header = (data_dir / "orders.csv").read_text().splitlines()[0]
    (data_dir / "none.csv").write_text(header + "\n")
    batches = [validation_batch(f"orders_{i}", "orders.csv") for i in range(3)] + [validation_batch("orders_none", "none.csv")]
    events = EventLog()

    outcome = run_workflow(
        workflow_config([data_dir], output_dir, batches), checkpoint=InMemorySaver(), thread_id="empty-1",
        factory=factory, on_event=events.append,
    )

    report = outcome.report
    empty = next(b for b in report.branches if b.branch_id == "orders_none")
    assert (empty.status, empty.metrics.rows_in, empty.metrics.quality) == ("empty", 0, 0.0)
    assert events.branch("orders_none", "finished")[0]["status"] == "empty"
    assert report.merge.empty_branch_ids == ["orders_none"]
    assert (report.merge.successful_branches, report.merge.success_rate) == (3, 0.75)
    assert "orders_none" not in report.merge.categories["validation"].source_attribution
    # It completed its sync point (no waiting for it), and the run is approved without its data.
    sync = next(e for e in report.timeline if e["event"] == "synchronization_checkpoint")
    assert sync["progress"] == 1.0
    assert report.status == "approved" and report.rounds == 1
