"""orchestra_example: the orchestra workflow on the bundled sample data, triggered from the UI.

Trigger it with the Params form (it opens on the sample config: five batches, one per
specialist route, two named sync points); edit any field, e.g. ``quality`` or ``sync``.
The first task generates the sample data under ``$ORCHESTRA_HOME/data`` (default
``$AIRFLOW_HOME/orchestra``) if it is missing; outputs go to ``$ORCHESTRA_HOME/output``.
No connection is needed: without ``orchestra_factory_default`` the agent factory uses an
embedded SQLite ledger.

Run it:
- end to end without a scheduler: ``python -m airflow_provider_orchestra.demo``
  (or ``make demo``), which runs this DAG with ``dag.test()``;
- in the UI: ``airflow standalone``, open http://localhost:8080, trigger
  ``orchestra_example``.
"""

from __future__ import annotations

from datetime import datetime, timezone

from airflow.sdk import DAG, task

from airflow_provider_orchestra.sample import sample_config
from airflow_provider_orchestra.task_groups import default_asset, orchestra_workflow, workflow_params
from airflow_provider_orchestra.task_groups.examples import (
    ensure_sample_data,
    example_output_dir,
    sample_data_dir,
)

DAG_ID = "orchestra_example"
INTEGRATED = default_asset(DAG_ID)

with DAG(
    DAG_ID,
    schedule=None,
    start_date=datetime(2024, 5, 1, tzinfo=timezone.utc),
    catchup=False,
    params=workflow_params(sample_config(sample_data_dir(), example_output_dir())),
    tags=["orchestra", "example"],
    doc_md=__doc__,
) as dag:

    @task
    def prepare_sample_data() -> dict[str, str]:
        """Generate the sample data if missing (run time only)."""
        return ensure_sample_data()

    prepare_sample_data() >> orchestra_workflow(asset=INTEGRATED)
