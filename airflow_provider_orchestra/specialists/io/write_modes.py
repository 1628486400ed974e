"""Write modes of a Parquet output: where a run's output meets what earlier runs wrote.

``append`` needs nothing here: each run's output stays in its own folder
(``<output_root>/<workflow>/<run>/<branch>/data``), which a retry of the run replaces.
``replace`` and ``upsert`` commit the run's output into the batch's dataset folder,
``<output_root>/<workflow>/_tables/<batch_id>``:

- ``replace``: the run's files are hard-linked (copied across filesystems) into a fresh
  folder beside the dataset, which is then swapped in atomically: readers see the previous
  run's dataset or this one, never a mix.
- ``upsert``: DuckDB merges the dataset with the run's rows by the key (a row of this run
  replaces the dataset's row with the same key), ordered by the key, into a fresh folder
  that is swapped in. The run's rows are checked first: each key once, none null.

A commit holds an exclusive lock on the dataset (a lock file beside it), so two runs
committing the same dataset take turns. Committing the same output twice gives the same
dataset, so a retry after a kill at any point converges on the expected rows. A partitioned
(Hive-style) output can be replaced but not upserted.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import duckdb
import pyarrow.dataset as ds

from airflow_provider_orchestra.core.errors import SinkError
from airflow_provider_orchestra.core.models import OutputDescriptor, WriteMode
from airflow_provider_orchestra.specialists.io.sinks import (
    WRITE_ERRORS,
    clear_leftovers,
    digest_files,
    files_under,
    fsync_path,
    swap_in,
    write_parquet,
)
from airflow_provider_orchestra.specialists.io.types import columns_of

_KEY_EXAMPLES = 5


# --------------------------------------------------------------------------- key checks


def duplicate_key_error(where: str, key: Sequence[str], repeated: list[dict[str, Any]]) -> SinkError:
    """The error of an upsert whose rows repeat a key (``repeated``: key values + rows)."""
    return SinkError(
        f"upsert into {where} refused: key {list(key)} is not unique in this run's output, e.g. {repeated}; "
        "nothing was written"
    )


def null_key_error(where: str, key: Sequence[str], rows: int) -> SinkError:
    return SinkError(f"upsert into {where} refused: {rows} row(s) of this run's output have a null in key {list(key)}; nothing was written")


def _check_key(con: Any, relation: str, where: str, key: Sequence[str]) -> None:
    from airflow_provider_orchestra.specialists.engine import quote_ident

    keys = ", ".join(quote_ident(c) for c in key)
    nulls = " OR ".join(f"{quote_ident(c)} IS NULL" for c in key)
    null_rows = con.execute(f"SELECT count(*) FROM {relation} WHERE {nulls}").fetchone()[0]
    if null_rows:
        raise null_key_error(where, key, null_rows)
    rows = con.execute(
        f"SELECT {keys}, count(*) AS n FROM {relation} GROUP BY {keys} HAVING count(*) > 1 "
        f"ORDER BY n DESC, {keys} LIMIT {_KEY_EXAMPLES}"
    ).fetchall()
    if rows:
        raise duplicate_key_error(where, key, [{**dict(zip(key, r[:-1], strict=True)), "rows": r[-1]} for r in rows])


# --------------------------------------------------------------------------- the commit


@contextlib.contextmanager
def dataset_lock(dest: Path) -> Iterator[None]:
    """An exclusive lock on the dataset folder ``dest`` (a lock file beside it)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(dest.parent / f".{dest.name}.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _link_tree(source: Path, target: Path) -> None:
    """Hard-link every file under ``source`` to the same place under ``target`` (Parquet
    files are never changed in place); copy where a link cannot cross filesystems."""
    for path in files_under(source):
        dest = target / path.relative_to(source)
        dest.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(path, dest)
        except OSError:
            shutil.copy2(path, dest)


def _replace(staged: Path, dest: Path) -> None:
    clear_leftovers(dest)
    fresh = Path(tempfile.mkdtemp(prefix=f".{dest.name}.tmp-", dir=dest.parent))
    try:
        _link_tree(staged, fresh)
        fsync_path(fresh)
        swap_in(fresh, dest)
        fsync_path(dest.parent)
    except BaseException:
        shutil.rmtree(fresh, ignore_errors=True)
        raise


def _same_columns(current: Any, incoming: Any, where: str) -> None:
    have = [(f.name, f.type) for f in current]
    want = [(f.name, f.type) for f in incoming]
    if have != want:
        raise SinkError(
            f"upsert into {where} refused: the dataset has columns {[f'{n} {t}' for n, t in have]}, this run "
            f"writes {[f'{n} {t}' for n, t in want]}; write once with write_mode 'replace' to change them"
        )


def _upsert(staged: Path, dest: Path, key: Sequence[str]) -> None:
    from airflow_provider_orchestra.specialists.engine import duckdb_connection, quote_ident

    where = str(dest)
    if any(p.is_dir() for p in staged.iterdir()):
        raise SinkError(f"upsert into {where} refused: a partitioned Parquet output can be appended or replaced, not upserted")
    incoming = ds.dataset(staged, format="parquet")
    unknown = [c for c in key if c not in incoming.schema.names]
    if unknown:
        raise SinkError(f"upsert key column(s) {unknown} are not among the output columns {incoming.schema.names}")
    workdir = tempfile.TemporaryDirectory(prefix=f".{dest.name}.tmp-merge-", dir=dest.parent)
    con = duckdb_connection(Path(workdir.name))
    try:
        con.register("__incoming", incoming)
        _check_key(con, "__incoming", where, key)
        keys = ", ".join(quote_ident(c) for c in key)
        if dest.exists() and files_under(dest):
            current = ds.dataset(dest, format="parquet")
            _same_columns(current.schema, incoming.schema, where)
            con.register("__current", current)
            query = (
                f"SELECT c.* FROM __current c ANTI JOIN __incoming i USING ({keys}) "
                f"UNION ALL SELECT * FROM __incoming ORDER BY {keys}"
            )
        else:
            query = f"SELECT * FROM __incoming ORDER BY {keys}"
        reader = con.sql(query).to_arrow_reader(1 << 16)
        write_parquet(reader, incoming.schema, dest)
    finally:
        con.close()
        workdir.cleanup()


def commit_dataset(output: OutputDescriptor, dest: Path, *, write_mode: WriteMode, key: Sequence[str] = ()) -> OutputDescriptor:
    """Commit a published Parquet output (its folder at ``output.uri``) into the dataset
    folder ``dest`` in ``write_mode``; the descriptor of the dataset is returned (``rows``:
    the rows this run wrote; checksum and size: the dataset's files after the commit)."""
    if write_mode == "append":
        return output
    staged = Path(unquote(urlsplit(output.uri).path))  # as_uri() escapes, e.g. a space
    try:
        with dataset_lock(dest):
            if write_mode == "replace":
                _replace(staged, dest)
            else:
                _upsert(staged, dest, key)
            files = files_under(dest)
            checksum, size = digest_files(dest, files)
            schema = ds.dataset(dest, format="parquet").schema if files else None
    except (*WRITE_ERRORS, duckdb.Error) as exc:
        raise SinkError(f"committing {str(dest)!r} ({write_mode}) failed, dataset unchanged: {type(exc).__name__}: {exc}") from exc
    return output.model_copy(
        update={
            "uri": dest.as_uri(),
            "checksum": checksum,
            "size_bytes": size,
            "columns": columns_of(schema) if schema is not None else output.columns,
        }
    )
