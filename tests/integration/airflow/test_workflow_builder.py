"""The shape orchestra_workflow lays out (trigger rules, approvals, mapping) and the Params
form built from the config model. Parsing only: no run."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from airflow_provider_orchestra.core.models import SPECIALISTS, WorkflowConfig
from airflow_provider_orchestra.sample import sample_config
from airflow_provider_orchestra.task_groups import orchestra_workflow, workflow_params
from airflow_provider_orchestra.task_groups.params import config_field_schemas


def build(dag_id="shape", **kwargs):
    from airflow.sdk import DAG

    with DAG(dag_id, schedule=None, start_date=datetime(2024, 5, 1, tzinfo=timezone.utc)) as dag:
        orchestra_workflow(**kwargs)
    return dag


def upstream(dag, task_id):
    return set(dag.get_task(task_id).upstream_task_ids)


def rule(dag, task_id) -> str:
    return str(getattr(dag.get_task(task_id).trigger_rule, "value", dag.get_task(task_id).trigger_rule))


def test_trigger_rules_and_wiring():
    dag = build(iteration_limit=3)
    p = "orchestra."
    analyzer = dag.get_task(p + "data_batch_analyzer")
    assert analyzer.is_setup  # a bad config stops every later task, whatever its rule
    for r in (1, 2, 3):
        g = f"{p}round_{r}."
        assert upstream(dag, g + "sync_point_manager") == {g + "parallel_coordinator"}
        sensor = dag.get_task(g + "sync_point_manager")
        assert sensor.round_started_task_id == g + "parallel_coordinator"
        assert set(sensor.specialist_task_ids) == {f"{p}round_{k}.{s}" for k in range(1, r + 1) for s in SPECIALISTS}
        assert upstream(dag, g + "branch_merger") == {g + "sync_point_manager", g + "timeout_recovery"}
        assert rule(dag, g + "branch_merger") == "one_success"
        assert rule(dag, g + "timeout_recovery") == "one_failed"
        recovery_targets = {g + "branch_merger"} | ({g + "recover_next_round"} if r < 3 else set())
        assert set(dag.get_task(g + "timeout_recovery").downstream_task_ids) == recovery_targets
        assert rule(dag, g + "quality_validator") == "all_success"
        assert rule(dag, g + "branches_done") == "all_done"
        assert upstream(dag, g + "branches_done") == {g + s for s in SPECIALISTS}
        assert set(dag.get_task(g + "quality_validator").downstream_task_ids) >= {g + "approved", g + "stop_workflow"}
        for s in SPECIALISTS:
            mapped = dag.get_task(g + s)
            assert type(mapped).__name__ == "MappedOperator"
            assert mapped.map_index_template == "{{ task.branch_task['branch_id'] }}"
            assert mapped.partial_kwargs["retries"] == 3
            assert upstream(dag, g + s) == {g + "route_" + s}
            # specialists feed only branches_done: a failed branch is never a leaf
            assert set(dag.get_task(g + s).downstream_task_ids) == {g + "branches_done"}
    for r in (2, 3):
        lb = f"{p}round_{r}.load_balancer"
        assert rule(dag, lb) == "one_success"
        assert upstream(dag, lb) == {f"{p}round_{r - 1}.quality_validator", f"{p}round_{r - 1}.recover_next_round"}
        assert upstream(dag, f"{p}round_{r - 1}.recover_next_round") == {f"{p}round_{r - 1}.timeout_recovery"}
    integrator = p + "final_integrator"
    assert rule(dag, integrator) == "none_failed_min_one_success"
    assert upstream(dag, integrator) == {f"{p}round_{r}.approved" for r in (1, 2, 3)}
    assert [o.uri for o in dag.get_task(integrator).outlets] == ["x-orchestra://integrated/shape/orchestra"]
    assert not [t for t in dag.tasks if t.task_id.startswith(f"{p}round_4.")]


def test_approvals_sit_before_the_sync_point_and_the_quality_validator():
    from airflow.providers.standard.operators.hitl import ApprovalOperator

    dag = build(require_approval=True, iteration_limit=2, approval_kwargs={"fail_on_reject": True})
    for r in (1, 2):
        g = f"orchestra.round_{r}."
        sync_approval = dag.get_task(g + "approve_sync_point")
        gate_approval = dag.get_task(g + "approve_quality_validation")
        assert isinstance(sync_approval, ApprovalOperator) and isinstance(gate_approval, ApprovalOperator)
        assert sync_approval.fail_on_reject
        assert upstream(dag, g + "approve_sync_point") == {g + "parallel_coordinator"}
        assert upstream(dag, g + "sync_point_manager") == {g + "approve_sync_point"}
        assert upstream(dag, g + "approve_quality_validation") == {g + "branch_merger"}
        assert upstream(dag, g + "quality_validator") == {g + "approve_quality_validation"}
    only_gate = build("only_gate", require_approval=["quality_validator"])
    assert "orchestra.round_1.approve_quality_validation" in only_gate.task_ids
    assert "orchestra.round_1.approve_sync_point" not in only_gate.task_ids


def test_builder_arguments_are_checked():
    with pytest.raises(RuntimeError, match="inside a DAG"):
        orchestra_workflow()
    with pytest.raises(ValueError, match="approval point"):
        build("bad_approval", require_approval=["branch_merger"])
    top_level = build("top_level", group_id=None, iteration_limit=1)
    assert "data_batch_analyzer" in top_level.task_ids and "round_1.parallel_coordinator" in top_level.task_ids


def test_params_carry_the_models_schema_and_defaults(tmp_path):
    from airflow.sdk import ParamsDict
    from airflow.sdk.exceptions import ParamValidationError

    defaults = sample_config(tmp_path / "data", tmp_path / "out")
    params = workflow_params(defaults)
    assert set(params) == set(WorkflowConfig.model_fields)
    resolved = ParamsDict(params).validate()
    assert WorkflowConfig.model_validate(resolved) == WorkflowConfig.model_validate(defaults)
    assert params["iteration_limit"].schema["maximum"] == 10
    assert params["sync"].schema["properties"]["quorum"]["exclusiveMinimum"] == 0.0
    with pytest.raises(ParamValidationError):
        params["iteration_limit"].resolve(0)
    with pytest.raises(ParamValidationError):
        params["batches"].resolve([{"batch_id": "x", "type": "data_transfer", "source": {"kind": "csv", "path": "x"}}])
    subset = workflow_params(defaults, fields=["sync", "quality"])
    assert list(subset) == ["sync", "quality"]
    with pytest.raises(ValueError, match="not WorkflowConfig fields"):
        workflow_params(defaults, fields=["sink"])
    with pytest.raises(Exception, match="batches"):
        workflow_params({**defaults, "batches": []})


def test_each_field_schema_is_self_contained():
    for name, schema in config_field_schemas().items():
        assert "$ref" not in str(schema), name


def test_config_from_params_keeps_unknown_conf_keys_and_drops_other_declared_params():
    from types import SimpleNamespace

    from airflow_provider_orchestra.operators.workflow import config_from_params

    dag = SimpleNamespace(params={"workflow_id": 1, "notify_email": 2})
    context = {"dag": dag, "params": {"workflow_id": "w", "notify_email": "x@y", "iteration_limt": 2}}
    assert config_from_params(context) == {"workflow_id": "w", "iteration_limt": 2}
