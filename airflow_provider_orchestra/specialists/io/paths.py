"""Keeping file sources and sinks under their configured roots."""

from __future__ import annotations

from pathlib import Path

from airflow_provider_orchestra.core.errors import SinkError, SourceError
from airflow_provider_orchestra.core.integration import safe_name
from airflow_provider_orchestra.core.models import StorageConfig


def _is_under(path: Path, root: Path) -> bool:
    return path == root or path.is_relative_to(root)


def resolve_under_roots(path: str, roots: list[str]) -> Path:
    """Resolve ``path`` (symlinks included) and return it only if it lies under a root.

    An absolute path must resolve under one of ``roots``. A relative path is tried
    against each root in order: the first candidate that exists wins, otherwise the
    first candidate that stays inside its root (so a later "missing file" error names
    a sensible location). Anything that escapes every root (``..``, a symlink pointing
    outside, an absolute path elsewhere) raises SourceError naming the path and roots.
    """
    if not roots:
        raise SourceError(f"no data roots configured; refusing to read {path!r}")
    if not path or "\x00" in path:
        raise SourceError(f"invalid source path {path!r}")
    resolved_roots = [Path(root).expanduser().resolve() for root in roots]
    given = Path(path).expanduser()
    if given.is_absolute():
        candidates = [(given.resolve(), root) for root in resolved_roots]
    else:
        candidates = [((root / given).resolve(), root) for root in resolved_roots]

    inside = [cand for cand, root in candidates if _is_under(cand, root)]
    for cand in inside:
        if cand.exists():
            return cand
    if inside:
        return inside[0]
    raise SourceError(
        f"path {path!r} resolves outside every data root {[str(r) for r in resolved_roots]}"
    )


def output_root_for(
    storage: StorageConfig, workflow_id: str, run_id: str, branch_id: str
) -> Path:
    """``<output_root>/<workflow>/<run>/<branch>`` with every part made file-name safe."""
    root = Path(storage.output_root).expanduser().resolve()
    target = root / safe_name(workflow_id) / safe_name(run_id) / safe_name(branch_id)
    if not _is_under(target.resolve(), root):  # a symlinked sub-directory pointing away
        raise SinkError(f"output directory for {branch_id!r} escapes {str(root)!r}")
    return target


def dataset_root_for(storage: StorageConfig, workflow_id: str, batch_id: str) -> Path:
    """``<output_root>/<workflow>/_tables/<batch>``: where a batch written with write_mode
    ``replace`` or ``upsert`` keeps its dataset across runs (no run folder can be called
    ``_tables``: safe_name strips a leading underscore)."""
    root = Path(storage.output_root).expanduser().resolve()
    target = root / safe_name(workflow_id) / "_tables" / safe_name(batch_id)
    if not _is_under(target.resolve(), root):
        raise SinkError(f"dataset directory for {batch_id!r} escapes {str(root)!r}")
    return target


def ensure_under(path: Path, root: str | Path) -> Path:
    """Return ``path`` resolved if it stays under ``root``; SinkError otherwise."""
    resolved_root = Path(root).expanduser().resolve()
    resolved = Path(path).expanduser().resolve()
    if not _is_under(resolved, resolved_root):
        raise SinkError(f"output path {str(path)!r} lies outside {str(resolved_root)!r}")
    return resolved


STATE_DIR = "_state"


def state_path(output_root: str | Path, name: str) -> Path:
    """``<output_root>/_state/<name>``, where a run keeps its offsets, ledger and
    checkpoints; the folder is created, and refused when it resolves outside the output
    root (a symlink pointing away), as branch folders are."""
    root = Path(output_root).expanduser().resolve()
    folder = root / STATE_DIR
    if not _is_under(folder.resolve(), root):
        raise SinkError(f"state folder {str(folder)!r} resolves outside the output root {str(root)!r}")
    folder.mkdir(parents=True, exist_ok=True)
    return folder / name
