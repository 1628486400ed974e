import pytest

from airflow_provider_orchestra.core.routing import CATEGORY_OF, route
from airflow_provider_orchestra.core.models import SPECIALISTS


@pytest.mark.parametrize(
    ("branch_type", "source_type", "priority", "expected"),
    [
        ("data_ingestion", "streaming", "normal", "data_ingestion_branch_alpha"),
        ("data_ingestion", "batch", "high", "data_validation_branch_beta"),
        ("data_ingestion", "realtime", "low", "data_transformation_branch_gamma"),
        ("data_aggregation", "streaming", "high", "data_aggregation_branch_primary"),
        ("data_aggregation", "batch", "normal", "data_quality_branch_secondary"),
        ("data_aggregation", "batch", "low", "data_quality_branch_secondary"),
    ],
)
def test_routes(branch_type, source_type, priority, expected):
    assert route(branch_type, source_type, priority) == expected


def test_unknown_branch_type_is_refused():
    with pytest.raises(ValueError, match="unknown branch type 'data_magic'"):
        route("data_magic", "batch", "high")


def test_every_specialist_has_a_merge_category():
    assert set(CATEGORY_OF) == set(SPECIALISTS)
    assert set(CATEGORY_OF.values()) == {"ingestion", "validation", "transformation", "aggregation"}
