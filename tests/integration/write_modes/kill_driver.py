"""Runs one aggregation branch natively (Specialist.run with a SQLite checkpointer) in its
own process, so a test can SIGKILL it mid-write and run it again as its retry.

Usage: python kill_driver.py '<json>' with keys task, checkpoint, thread_id, sink_url,
stop_at ("read": the second source record batch; "load": the first batch COPYed to the
sink; null: run through), signal (a file written when the run stops there) and go (the
run starts once this file exists, so a test can start the process while an earlier one
still runs). At the stop it writes the signal file and waits to be killed; at the end it
prints RESULT <json>.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path
from typing import Any

from airflow_provider_orchestra.specialists.checkpoint import make_saver
from airflow_provider_orchestra.specialists.templates import run_specialist_directly


def main(args: dict[str, Any]) -> None:
    stop_at = args.get("stop_at")

    def on_progress(event: dict[str, Any]) -> None:
        reached = (stop_at == "read" and event.get("batch") == 2 and "stage" not in event) or (
            stop_at == "load" and event.get("stage") == "load"
        )
        if reached:
            Path(args["signal"]).write_text(json.dumps(event))
            threading.Event().wait()  # until the test kills this process

    while not Path(args["go"]).exists():
        time.sleep(0.01)
    result = run_specialist_directly(
        args["task"],
        saver=make_saver(args["checkpoint"]),
        thread_id=args["thread_id"],
        connections={"warehouse": args["sink_url"]},
        on_progress=on_progress,
    )
    print("RESULT " + result.model_dump_json(), flush=True)


if __name__ == "__main__":
    main(json.loads(sys.argv[1]))
