"""Runs a script as if apache-airflow-providers-openlineage (and the OpenLineage client)
were not installed: a meta-path finder refuses every such module, and their distributions
(whose entry points Airflow reads to find providers and plugins) are not listed.

    python without_openlineage.py <script> <args...>

At exit it prints ``BLOCKED <json>``: the refused imports, those asked for by a module of
this package (``ours``) and any OpenLineage module loaded all the same (``loaded``).
"""

from __future__ import annotations

import atexit
import json
import runpy
import sys
import traceback

BLOCKED = ("openlineage", "airflow.providers.openlineage")
BLOCKED_DISTRIBUTIONS = ("apache-airflow-providers-openlineage", "openlineage-")
OURS = "airflow_provider_orchestra"


class RefuseOpenLineage:
    refused: list[str] = []
    ours: list[str] = []

    @classmethod
    def find_spec(cls, name, path=None, target=None):
        if not any(name == b or name.startswith(b + ".") for b in BLOCKED):
            return None
        cls.refused.append(name)
        # The frame that asked: the last one outside importlib and this finder.
        callers = [f.filename for f in traceback.extract_stack()[:-1] if "importlib" not in f.filename and "<frozen" not in f.filename]
        if callers and f"/{OURS}/" in callers[-1]:
            cls.ours.append(f"{name} from {callers[-1]}")
        raise ModuleNotFoundError(f"No module named {name!r} (blocked)", name=name)


def report() -> None:
    loaded = sorted(m for m in sys.modules if any(m == b or m.startswith(b + ".") for b in BLOCKED))
    print("BLOCKED " + json.dumps({"refused": sorted(set(RefuseOpenLineage.refused)), "ours": RefuseOpenLineage.ours, "loaded": loaded}), flush=True)


def hide_distributions() -> None:
    import importlib.metadata

    import importlib_metadata

    for module in (importlib.metadata, importlib_metadata):
        listed = module.distributions

        def distributions(*args, _listed=listed, **kwargs):
            for dist in _listed(*args, **kwargs):
                if not (dist.metadata["Name"] or "").lower().startswith(BLOCKED_DISTRIBUTIONS):
                    yield dist

        module.distributions = distributions


if __name__ == "__main__":
    hide_distributions()
    sys.meta_path.insert(0, RefuseOpenLineage)
    try:  # the finder is in force (this refusal is the first one reported)
        import openlineage  # noqa: F401
    except ModuleNotFoundError:
        pass
    else:
        sys.exit("openlineage could still be imported")
    atexit.register(report)
    script, sys.argv = sys.argv[1], sys.argv[1:]
    runpy.run_path(script, run_name="__main__")
