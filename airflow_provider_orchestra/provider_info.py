"""What Airflow's ProvidersManager learns about this package (pure data, no imports of
Airflow: it is read while Airflow itself is still starting).

The connection form of the agent factory is declared here (``conn-fields`` and
``ui-field-behaviour``) so the UI can render it without importing the hook; the hook's
``get_connection_form_widgets()`` / ``get_ui_field_behaviour()`` read the same table.
"""

from __future__ import annotations

from typing import Any

from airflow_provider_orchestra import __version__

PACKAGE_NAME = "airflow-provider-orchestra"
INTEGRATION = "Orchestra"
FACTORY_CONN_TYPE = "orchestra_factory"
FACTORY_HOOK_CLASS = "airflow_provider_orchestra.hooks.agent_factory.AgentFactoryHook"
FACTORY_HOOK_NAME = "Orchestra Agent Factory"

# Extra fields of an ``orchestra_factory`` connection: name -> (label, JSON schema, help).
# Everything is optional; an empty connection means the embedded SQLite ledger with this
# machine's capacity.
FACTORY_CONN_FIELDS: dict[str, dict[str, Any]] = {
    "ledger_url": {
        "label": "Ledger URL",
        "schema": {"type": ["string", "null"]},
        "description": "SQLite file path or postgresql:// URL of the resource ledger. "
        "Empty: the embedded SQLite ledger under the workflow's output root.",
    },
    "ledger_conn_id": {
        "label": "Ledger Postgres connection id",
        "schema": {"type": ["string", "null"]},
        "description": "Id of a Postgres connection holding the ledger (instead of a URL; "
        "keeps the password in the connection store).",
    },
    "cpu": {
        "label": "CPU capacity",
        "schema": {"type": ["number", "null"], "exclusiveMinimum": 0},
        "description": "CPUs the factory may hand out. Empty: the stored capacity, or every core.",
    },
    "memory_mb": {
        "label": "Memory capacity (MB)",
        "schema": {"type": ["number", "null"], "exclusiveMinimum": 0},
        "description": "Memory the factory may hand out. Empty: the stored capacity, or all memory.",
    },
    "max_agents": {
        "label": "Max concurrent agents",
        "schema": {"type": ["integer", "null"], "minimum": 1},
        "description": "Agents alive at once. Empty: the stored capacity, or one per core.",
    },
    "template_set": {
        "label": "Template set",
        "schema": {"type": ["string", "null"], "default": "default"},
        "description": "Registered agent template set to instantiate from.",
    },
}

FACTORY_UI_FIELD_BEHAVIOUR: dict[str, Any] = {
    "hidden-fields": ["host", "schema", "login", "password", "port", "extra"],
    "relabeling": {},
    "placeholders": {
        "ledger_url": "output/_state/ledger.sqlite or postgresql://user@host:5432/db",
        "ledger_conn_id": "postgres_default",
        "template_set": "default",
    },
}


def get_provider_info() -> dict[str, Any]:
    modules = "airflow_provider_orchestra"
    return {
        "package-name": PACKAGE_NAME,
        "name": "Orchestra",
        "description": "Adaptive, parallel multi-agent data-processing workflows as Airflow "
        "DAGs: an agent-factory hook, the workflow operators, a deferrable quorum sensor and "
        "a TaskGroup builder.",
        "versions": [__version__],
        "integrations": [
            {
                "integration-name": INTEGRATION,
                "external-doc-url": "https://github.com/airflow-provider-orchestra/airflow-provider-orchestra",
                "tags": ["software"],
            }
        ],
        "operators": [
            {
                "integration-name": INTEGRATION,
                "python-modules": [f"{modules}.operators.workflow", f"{modules}.operators.specialist"],
            }
        ],
        "sensors": [{"integration-name": INTEGRATION, "python-modules": [f"{modules}.sensors.quorum"]}],
        "triggers": [{"integration-name": INTEGRATION, "python-modules": [f"{modules}.triggers.quorum"]}],
        "hooks": [{"integration-name": INTEGRATION, "python-modules": [f"{modules}.hooks.agent_factory"]}],
        "connection-types": [
            {
                "connection-type": FACTORY_CONN_TYPE,
                "hook-class-name": FACTORY_HOOK_CLASS,
                "hook-name": FACTORY_HOOK_NAME,
                "conn-fields": FACTORY_CONN_FIELDS,
                "ui-field-behaviour": FACTORY_UI_FIELD_BEHAVIOUR,
            }
        ],
    }
