"""Turning a connection id into a Postgres URL without ever showing the URL."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

from airflow_provider_orchestra.core.errors import SourceError
from airflow_provider_orchestra.core.secrets import redact_text

# Query parameters psycopg understands; Airflow adds others (``__extra__``) it would reject.
_LIBPQ_PARAMS = {
    "sslmode", "sslrootcert", "sslcert", "sslkey", "sslpassword", "connect_timeout",
    "application_name", "options", "target_session_attrs", "keepalives",
    "keepalives_idle", "keepalives_interval", "keepalives_count", "gssencmode",
    "passfile", "channel_binding", "host", "hostaddr", "port", "dbname", "user",
    "password", "client_encoding",
}


def _normalise_uri(uri: str) -> str:
    parts = urlsplit(uri)
    scheme = parts.scheme.lower()
    if scheme in {"postgres", "postgresql", "postgresql+psycopg", "postgresql+psycopg2"}:
        scheme = "postgresql"
    else:
        raise ValueError(f"connection scheme {parts.scheme!r} is not postgres")
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k in _LIBPQ_PARAMS]
    return urlunsplit((scheme, parts.netloc, parts.path, urlencode(query), ""))


def _uri_from_json(text: str) -> str:
    """Airflow's JSON connection form: {"conn_type": "postgres", "host": ..., ...}."""
    data = json.loads(text)
    conn_type = str(data.get("conn_type", "postgres")).lower()
    if conn_type not in {"postgres", "postgresql"}:
        raise ValueError(f"connection type {conn_type!r} is not postgres")
    login = quote(str(data.get("login") or ""), safe="")
    password = quote(str(data.get("password") or ""), safe="")
    auth = f"{login}:{password}@" if password else (f"{login}@" if login else "")
    host = data.get("host") or ""
    port = f":{data['port']}" if data.get("port") else ""
    database = data.get("schema") or data.get("database") or ""
    extra = data.get("extra") or {}
    if isinstance(extra, str):
        extra = json.loads(extra) if extra.strip() else {}
    query = urlencode({k: v for k, v in extra.items() if k in _LIBPQ_PARAMS})
    return urlunsplit(("postgresql", f"{auth}{host}{port}", f"/{database}", query, ""))


def to_postgres_url(value: str) -> str:
    """Accept a URI (postgres:// or postgresql://) or Airflow's JSON form."""
    text = value.strip()
    if text.startswith("{"):
        return _uri_from_json(text)
    return _normalise_uri(text)


class ConnectionResolver:
    """Resolve a connection id to a postgresql URL.

    Order: the explicit ``mapping`` given to the constructor, then ``lookup`` (a callable
    the Airflow adapter plugs in, returning a URL or None), then the environment
    variables ``ORCHESTRA_CONN_<ID>`` and ``AIRFLOW_CONN_<ID>`` (ID upper-cased). Error
    messages name the connection id, never the URL.
    """

    def __init__(
        self,
        mapping: Mapping[str, str] | None = None,
        *,
        lookup: Callable[[str], str | None] | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self._mapping = dict(mapping or {})
        self._lookup = lookup
        self._environ = environ

    def _from_environment(self, conn_id: str) -> str | None:
        env = os.environ if self._environ is None else self._environ
        key = conn_id.upper()
        for name in (f"ORCHESTRA_CONN_{key}", f"AIRFLOW_CONN_{key}"):
            if env.get(name):
                return env[name]
        return None

    def lookup(self, conn_id: str) -> str | None:
        """The raw connection value for ``conn_id`` or None; subclasses may override."""
        if conn_id in self._mapping:
            return self._mapping[conn_id]
        if self._lookup is not None:
            found = self._lookup(conn_id)
            if found:
                return found
        return self._from_environment(conn_id)

    def resolve(self, conn_id: str) -> str:
        if not conn_id:
            raise SourceError("no connection id given")
        shown = redact_text(conn_id)
        if "://" in conn_id:
            # A URL where a connection's name belongs: it is looked up nowhere (a lookup may
            # log what it looked for) and shown only without its password.
            raise SourceError(
                f"connection id {shown!r} is a URL: a connection id names a connection (an "
                "Airflow connection, or ORCHESTRA_CONN_<ID> in the environment) holding the URL"
            )
        raw = self.lookup(conn_id)
        if not raw:
            raise SourceError(
                f"unknown connection {shown!r}: define ORCHESTRA_CONN_{shown.upper()} "
                f"or AIRFLOW_CONN_{shown.upper()}, or an Airflow connection of that id"
            )
        try:
            return to_postgres_url(raw)
        except (ValueError, TypeError, KeyError) as exc:
            # The reason names the scheme/type only; the value itself stays out of logs.
            raise SourceError(f"connection {shown!r} is not a usable Postgres connection: {exc}") from None

    def __call__(self, conn_id: str) -> str:
        return self.resolve(conn_id)
