"""Runs one specialist in its own process for the kill/resume tests.

usage: specialist_resume_worker.py <tmp_path> <saver_url> <thread_id> <mode> <batch json> [connections json]

mode ``kill``: SIGKILL this process right after the first record batch.
mode ``resume``: fail loudly if the plan node runs again (it completed before the kill).
Prints the BranchResult as JSON.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from specialist_test_support import make_task  # noqa: E402

from airflow_provider_orchestra.specialists import base  # noqa: E402
from airflow_provider_orchestra.specialists.checkpoint import close_saver, make_saver  # noqa: E402
from airflow_provider_orchestra.specialists.templates import run_specialist_directly  # noqa: E402


def main() -> None:
    tmp_path, saver_url, thread_id, mode, batch = sys.argv[1:6]
    connections = json.loads(sys.argv[6]) if len(sys.argv) > 6 else None
    task = make_task(Path(tmp_path), json.loads(batch), record_batch_rows=3)

    def on_progress(event: dict) -> None:
        if mode == "kill" and event["batch"] == 1:
            os.kill(os.getpid(), signal.SIGKILL)

    def forbidden(name):
        def node(*args, **kwargs):
            raise RuntimeError(f"node {name} ran again")

        return node

    if mode == "resume":
        base.Specialist._node_plan = forbidden("plan")

    saver = make_saver(saver_url)
    try:
        result = run_specialist_directly(
            task, saver=saver, thread_id=thread_id, connections=connections, on_progress=on_progress
        )
    finally:
        close_saver(saver)
    print(result.model_dump_json())


if __name__ == "__main__":
    main()
