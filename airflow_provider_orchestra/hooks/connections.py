"""Connection ids resolved through Airflow's connection store (metadata DB, secrets
backends, ``AIRFLOW_CONN_*``), for the specialists' Postgres sources and sinks."""

from __future__ import annotations

from airflow_provider_orchestra.specialists.io.connections import ConnectionResolver


def airflow_connection_uri(conn_id: str) -> str | None:
    """The URI of Airflow connection ``conn_id``, or None when Airflow has no such
    connection. Never logged: it may carry a password."""
    from airflow.sdk import BaseHook
    from airflow.sdk.exceptions import AirflowNotFoundException

    try:
        return BaseHook.get_connection(conn_id).get_uri()
    except AirflowNotFoundException:
        return None


class AirflowConnectionResolver(ConnectionResolver):
    """Airflow connections first, then what the base resolver knows (an explicit mapping,
    ``ORCHESTRA_CONN_<ID>``)."""

    def lookup(self, conn_id: str) -> str | None:
        return airflow_connection_uri(conn_id) or super().lookup(conn_id)
