import json
import math
import subprocess
import sys
import typing

import pytest
from pydantic import BaseModel

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


def _float_paths(model: type[BaseModel], prefix: tuple = ()) -> list[tuple]:
    """Every float field reachable from ``model`` (list items at index 0)."""

    def walk(annotation, path):
        if annotation is float:
            yield path
        elif isinstance(annotation, type) and issubclass(annotation, BaseModel):
            yield from _float_paths(annotation, path)
        else:
            origin = typing.get_origin(annotation)
            for arg in typing.get_args(annotation):
                yield from walk(arg, (*path, 0) if origin is list else path)

    found = []
    for name, field in model.model_fields.items():
        found += walk(field.annotation, (*prefix, field.alias or name))
    return list(dict.fromkeys(found))


def _everything() -> dict:
    """A valid config with an element in every list whose items hold floats."""
    return {
        "batches": [batch(validation={"rules": [{"column": "x", "min": 0, "max": 1, "allowed": [1.5]}]})],
    }


def _put(data, path, value):
    for key in path[:-1]:
        data = data.setdefault(key, {}) if isinstance(data, dict) else data[key]
    if isinstance(data, list):
        data[path[-1]] = value
    else:
        data[path[-1]] = value


FLOAT_PATHS = _float_paths(WorkflowConfig)


def test_the_float_walk_finds_the_fields_a_user_sets():
    names = {".".join(map(str, p)) for p in FLOAT_PATHS}
    assert {
        "batches.0.ingestion.late_tolerance_seconds",
        "batches.0.validation.rules.0.min",
        "batches.0.validation.rules.0.allowed.0",
        "sync.overall_timeout_seconds",
        "quality.approve_quality",
    } <= names


@pytest.mark.parametrize("path", FLOAT_PATHS, ids=lambda p: ".".join(map(str, p)))
@pytest.mark.parametrize("value", [math.inf, -math.inf, math.nan], ids=["inf", "-inf", "nan"])
def test_non_finite_numbers_are_refused_in_every_float_field(path, value):
    data = _everything()
    parse_config(data)  # valid as it is
    _put(data, path, value)
    err = fails(data)
    where = ".".join(map(str, path))
    assert any(f.startswith(where) for f in err.fields), (err.fields, str(err))


def test_late_tolerance_of_infinity_from_yaml_is_refused():
    import yaml

    data = yaml.safe_load("batches:\n- {batch_id: e, type: data_ingestion, source_type: streaming,"
                          " source: {kind: jsonl, path: e.jsonl}, ingestion: {late_tolerance_seconds: .inf}}")
    err = fails(data)
    assert "batches.0.ingestion.late_tolerance_seconds" in err.fields


def test_a_sync_point_cycle_is_refused_at_validation_naming_the_branches():
    batches = [batch(b) for b in ("a", "b", "c", "d")]
    err = fails({"batches": batches, "sync_points": {"p": ["a", "d"], "q": ["b", "c"]},
                 "branch_dependencies": {"b": ["a"], "d": ["c"]}})
    assert "sync_points" in str(err) and "b depends on a" in str(err) and "d depends on c" in str(err)


def test_a_cycle_through_the_batches_no_sync_point_names_is_refused_too():
    batches = [batch(b) for b in ("a", "b", "c")]
    err = fails({"batches": batches, "sync_points": {"fast": ["a"]}, "branch_dependencies": {"a": ["b"], "c": ["a"]}})
    assert "remaining_branches" in str(err) and "a depends on b" in str(err) and "c depends on a" in str(err)


@pytest.mark.parametrize("name", ["remaining_branches", "all_branches"])
def test_the_implicit_sync_point_names_are_reserved(name):
    err = fails({"batches": [batch("a")], "sync_points": {name: ["a"]}})
    assert name in str(err) and "reserved" in str(err)
