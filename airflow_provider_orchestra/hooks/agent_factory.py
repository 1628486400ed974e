"""The agent-factory hook: where the resource ledger lives, how much it may hand out and
which template set agents come from, read from an ``orchestra_factory`` connection.

A connection (all fields optional, in its extras)::

    {"ledger_url": "postgresql://orchestra@db:5432/orchestra"}   # or
    {"ledger_conn_id": "postgres_default", "cpu": 8, "memory_mb": 16384,
     "max_agents": 8, "template_set": "default"}

Without a connection named ``orchestra_factory_default`` the hook uses the embedded
default: the SQLite ledger at ``$ORCHESTRA_LEDGER_URL`` or
``<storage.output_root>/_state/ledger.sqlite`` with this machine's capacity, so the
example DAGs run with zero setup. A connection id other than the default that does not
exist is an error (a typo must not silently fall back to a private ledger).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseHook
from airflow.sdk.exceptions import AirflowNotFoundException

from airflow_provider_orchestra.core.secrets import redact_text
from airflow_provider_orchestra.provider_info import (
    FACTORY_CONN_FIELDS,
    FACTORY_CONN_TYPE,
    FACTORY_HOOK_NAME,
    FACTORY_UI_FIELD_BEHAVIOUR,
)

if TYPE_CHECKING:
    from airflow_provider_orchestra.core.models import WorkflowConfig
    from airflow_provider_orchestra.factory import (
        AgentFactory,
        AgentSpecification,
        Lease,
        TaskRequirements,
        TemplateStats,
    )

DEFAULT_FACTORY_CONN_ID = "orchestra_factory_default"
DEFAULT_TEMPLATE_SET = "default"


def holder_for(context: Mapping[str, Any]) -> str:
    """The ledger holder (and checkpoint thread id) of one task instance:
    ``dag_id/run_id/task_id/map_index``. Stable across the task's retries, so a retried
    attempt gets its own lease back instead of holding twice."""
    ti = context["ti"]
    return f"{ti.dag_id}/{ti.run_id}/{ti.task_id}/{ti.map_index}"


def _extra_value(extras: Mapping[str, Any], name: str) -> Any:
    # Older UIs stored form extras as ``extra__<conn_type>__<field>``.
    value = extras.get(name, extras.get(f"extra__{FACTORY_CONN_TYPE}__{name}"))
    return None if value == "" else value


class AgentFactoryHook(BaseHook):
    """Opens the agent factory named by an ``orchestra_factory`` connection and offers the
    factory's steps to operators: specification, allocation, instantiation, release and
    performance records.

    :param factory_conn_id: the connection; default ``orchestra_factory_default`` (optional,
        see the module docstring).
    :param config: the run's workflow config; its ``storage.output_root`` places the
        embedded SQLite ledger.
    """

    conn_name_attr = "factory_conn_id"
    default_conn_name = DEFAULT_FACTORY_CONN_ID
    conn_type = FACTORY_CONN_TYPE
    hook_name = FACTORY_HOOK_NAME

    def __init__(
        self,
        factory_conn_id: str = DEFAULT_FACTORY_CONN_ID,
        *,
        config: WorkflowConfig | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.factory_conn_id = factory_conn_id
        self.config = config

    # ------------------------------------------------------------------ connection form

    @classmethod
    def get_connection_form_widgets(cls) -> dict[str, Any]:
        """The form fields of the connection (Airflow < 3.2 reads these; newer Airflow
        reads the same table from ``conn-fields`` in the provider info)."""
        from flask_babel import lazy_gettext
        from wtforms import IntegerField, StringField
        from wtforms.validators import NumberRange, Optional

        widgets: dict[str, Any] = {}
        for name, field in FACTORY_CONN_FIELDS.items():
            types = field["schema"]["type"]
            if "integer" in types:
                widget = IntegerField(
                    lazy_gettext(field["label"]),
                    validators=[Optional(), NumberRange(min=1)],
                    description=field["description"],
                )
            else:
                # Numbers stay text so fractional cpu values are accepted as typed.
                widget = StringField(lazy_gettext(field["label"]), description=field["description"])
            widgets[name] = widget
        return widgets

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        return {
            "hidden_fields": list(FACTORY_UI_FIELD_BEHAVIOUR["hidden-fields"]),
            "relabeling": dict(FACTORY_UI_FIELD_BEHAVIOUR["relabeling"]),
            "placeholders": dict(FACTORY_UI_FIELD_BEHAVIOUR["placeholders"]),
        }

    # ------------------------------------------------------------------ settings

    @cached_property
    def settings(self) -> dict[str, Any]:
        """The connection's extras, or {} for the embedded default."""
        if "://" in self.factory_conn_id:
            raise AirflowNotFoundException(
                f"factory connection id {redact_text(self.factory_conn_id)!r} is a URL: name a connection instead"
            )
        try:
            conn = self.get_connection(self.factory_conn_id)
        except AirflowNotFoundException:
            if self.factory_conn_id != DEFAULT_FACTORY_CONN_ID:
                raise
            self.log.info("No connection %r: using the embedded SQLite ledger", self.factory_conn_id)
            return {}
        extras = conn.extra_dejson
        if isinstance(extras, str):  # a connection whose extra is not a JSON object
            extras = json.loads(extras or "{}")
        return {name: _extra_value(extras, name) for name in FACTORY_CONN_FIELDS}

    def ledger_url(self) -> str | None:
        """The ledger's URL or path; None means the embedded default. Never logged as is:
        a Postgres URL may carry a password."""
        settings = self.settings
        if settings.get("ledger_url"):
            return str(settings["ledger_url"])
        if settings.get("ledger_conn_id"):
            from airflow_provider_orchestra.hooks.connections import AirflowConnectionResolver

            return AirflowConnectionResolver().resolve(str(settings["ledger_conn_id"]))
        return None

    def capacity(self):
        """A LedgerCapacity when the connection sets any of cpu / memory_mb / max_agents
        (the unset ones from this machine), else None: the ledger keeps what it stores."""
        from airflow_provider_orchestra.factory import LedgerCapacity

        given = {k: self.settings.get(k) for k in ("cpu", "memory_mb", "max_agents")}
        if all(v is None for v in given.values()):
            return None
        machine = LedgerCapacity.from_machine()
        return LedgerCapacity(
            cpu=float(given["cpu"]) if given["cpu"] is not None else machine.cpu,
            memory_mb=float(given["memory_mb"]) if given["memory_mb"] is not None else machine.memory_mb,
            max_agents=int(given["max_agents"]) if given["max_agents"] is not None else machine.max_agents,
        )

    def template_set(self) -> str:
        return str(self.settings.get("template_set") or DEFAULT_TEMPLATE_SET)

    # ------------------------------------------------------------------ the factory

    def get_conn(self) -> AgentFactory:
        return self.get_factory()

    @cached_property
    def _factory(self) -> AgentFactory:
        from airflow_provider_orchestra import runtime

        factory = runtime.open_factory(
            self.ledger_url(),
            config=self.config,
            capacity=self.capacity(),
            template_set=self.template_set(),
        )
        self.log.info("Agent factory: %r", factory)
        return factory

    def get_factory(self) -> AgentFactory:
        """The factory (opened once per hook)."""
        return self._factory

    def generate_spec(
        self, requirements: TaskRequirements | Mapping[str, Any], context: Mapping[str, Any] | None = None
    ) -> AgentSpecification:
        """The best registered template for ``requirements``, specified as an agent."""
        return self.get_factory().generate_spec(requirements, context)

    def allocate(self, spec: AgentSpecification, holder: str) -> Lease:
        """Reserve the spec's resources for ``holder`` (see :func:`holder_for`). The lease
        expires unless heartbeated, so a killed task gives its share back."""
        return self.get_factory().allocate(spec, holder)

    def instantiate(self, spec: AgentSpecification, lease: Lease) -> Any:
        """An agent from a registered template (never a class path from conf)."""
        return self.get_factory().instantiate(spec, lease)

    def release(self, lease: Lease) -> bool:
        return self.get_factory().release(lease)

    def record_performance(
        self, agent_type: str, success: bool, seconds: float, quality: float | None = None
    ) -> TemplateStats:
        return self.get_factory().record_outcome(agent_type, success, seconds, quality)

    def test_connection(self) -> tuple[bool, str]:
        """Open the ledger and read its capacity and leases."""
        try:
            factory = self.get_factory()
            snapshot = factory.ledger.snapshot()
        except Exception as exc:  # the UI shows the message; the URL's password is not in it
            return False, f"{type(exc).__name__}: {exc}"
        cap = snapshot.capacity
        return True, (
            f"ledger {factory.ledger.store.display_url}: capacity cpu={cap.cpu:g}, "
            f"memory_mb={cap.memory_mb:.0f}, max_agents={cap.max_agents}; "
            f"{snapshot.active_leases} active lease(s); templates {factory.registry.agent_types()}"
        )
