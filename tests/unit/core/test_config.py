import json
import subprocess
import sys

import pytest

from airflow_provider_orchestra.core.errors import ConfigError
from airflow_provider_orchestra.core.models import WorkflowConfig, parse_config


def batch(batch_id="orders", **extra):
    return {"batch_id": batch_id, "type": "data_ingestion", "source": {"kind": "csv", "path": "orders.csv"}, **extra}


def fails(data) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        parse_config(data)
    return info.value


def test_a_minimal_config_gets_the_documented_defaults():
    cfg = parse_config({"batches": [batch()]})
    assert cfg.iteration_limit == 3
    assert cfg.sync.quorum == 0.75
    assert cfg.quality.approve_quality == 0.8
    assert cfg.batches[0].validation.confidence == 0.95


def test_json_text_and_models_are_accepted():
    cfg = parse_config(json.dumps({"batches": [batch()]}))
    assert parse_config(cfg) is cfg
    assert parse_config(cfg.model_dump(mode="json")) == cfg


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"batches": [batch(type="data_magic")]}, "batches.0.type"),
        ({"batches": [batch()], "iteration_limit": "three"}, "iteration_limit"),
        ({"batches": [batch()], "sync": {"quorum": -0.1}}, "sync.quorum"),
        ({"batches": [batch()], "sync": {"quorum": 1.5}}, "sync.quorum"),
        ({"batches": [batch()], "quality": {"approve_quality": 2}}, "quality.approve_quality"),
        ({"batches": [batch()], "sync": {"overall_timeout_seconds": -5}}, "sync.overall_timeout_seconds"),
        ({"batches": []}, "batches"),
        ({"batches": [batch(source={"kind": "postgres", "table": "t"})]}, "batches.0.source"),
        ({"batches": [batch(batch_id="x; drop table y")]}, "batches.0.batch_id"),
        ({"batches": [batch()], "surprise": 1}, "surprise"),
        ({"batches": [batch(), batch()]}, "batches"),
    ],
)
def test_bad_values_name_their_field(data, field):
    err = fails(data)
    assert field in err.fields, (err.fields, str(err))
    assert field in str(err)


def test_cyclic_dependencies_are_refused_naming_the_cycle():
    err = fails({"batches": [batch("a"), batch("b")], "branch_dependencies": {"a": ["b"], "b": ["a"]}})
    assert "branch_dependencies" in str(err) and "cycle" in str(err)


def test_a_sync_point_naming_an_unknown_branch_is_refused():
    err = fails({"batches": [batch("a")], "sync_points": {"first": ["a", "ghost"]}})
    assert "sync point 'first'" in str(err) and "ghost" in str(err)


def test_dependencies_on_unknown_branches_are_refused():
    err = fails({"batches": [batch("a")], "branch_dependencies": {"a": ["ghost"]}})
    assert "ghost" in str(err)


def test_conditional_timeout_cannot_exceed_the_overall_timeout():
    err = fails({"batches": [batch()], "sync": {"conditional_timeout_seconds": 100, "overall_timeout_seconds": 50}})
    assert "conditional_timeout_seconds" in str(err)


def test_json_schema_is_available_for_forms_and_the_cli():
    schema = WorkflowConfig.model_json_schema()
    assert "batches" in schema["properties"]


def test_core_imports_neither_airflow_nor_langgraph():
    code = (
        "import sys, pkgutil, importlib, airflow_provider_orchestra.core as core\n"
        "for m in pkgutil.walk_packages(core.__path__, core.__name__ + '.'):\n"
        "    importlib.import_module(m.name)\n"
        "bad = sorted(n for n in sys.modules if n.split('.')[0] in ('airflow', 'langgraph', 'langchain_core'))\n"
        "print(bad)\n"
        "sys.exit(1 if bad else 0)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
