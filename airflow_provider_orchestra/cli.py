"""``orchestra``: run the workflow natively (LangGraph) from the command line.

    orchestra run CONFIG [--checkpoint URL] [--thread-id ID] [--interrupt-before NODE ...] [--json]
    orchestra resume THREAD_ID --checkpoint URL [--json]     (URL default: $ORCHESTRA_CHECKPOINT_URL)
    orchestra validate CONFIG [--offline]
    orchestra schema
    orchestra sample DIR

CONFIG is a YAML or JSON file validated by the same model the Airflow DAG uses
(``core.models.WorkflowConfig``). Branch progress goes to stderr; the final report to
stdout (``--json``: JSON only). Exit codes: 0 approved (or paused at an interrupt),
1 the workflow ended without approval, 2 the input or an external store was unusable.
Errors are one line, naming the field or the store; ``--debug`` shows tracebacks.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

EXIT_OK = 0
EXIT_NOT_APPROVED = 1
EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130

PROGRESS_INTERVAL_SECONDS = 1.0
CHECKPOINT_URL_ENV = "ORCHESTRA_CHECKPOINT_URL"  # keeps a password off the command line
SAMPLE_CONFIG_NAME = "orchestra.yaml"


class CliError(Exception):
    """A one-line reason the command cannot go on."""


# --------------------------------------------------------------------------- input


def read_config_file(path: str):
    """Parse and validate a YAML or JSON workflow config file."""
    import yaml

    from airflow_provider_orchestra.runtime import load_config

    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CliError(f"config file not found: {path}") from None
    except (OSError, UnicodeError) as exc:
        raise CliError(f"cannot read config file {path}: {exc}") from None
    try:
        data = yaml.safe_load(text)
    except RecursionError:
        raise CliError(f"config file {path} nests deeper than it can be read; a workflow config is a few levels deep") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise CliError(f"config file {path} is not valid YAML/JSON{where}: {problem}") from None
    if not isinstance(data, dict):
        raise CliError(f"config file {path} must hold a mapping, got {type(data).__name__}")
    return load_config(data)


# --------------------------------------------------------------------------- output


class ProgressPrinter:
    """Branch progress as short lines on stderr, at most one progress line per branch
    per second (start, end and node steps always print)."""

    def __init__(self, stream: TextIO, *, quiet: bool = False):
        self.stream = stream
        self.quiet = quiet
        self._last: dict[tuple[str, int], float] = {}
        self._lock = threading.Lock()

    def __call__(self, event: dict[str, Any]) -> None:
        if self.quiet:
            return
        line = self._format(event)
        if line:
            with self._lock:
                print(line, file=self.stream, flush=True)

    def _format(self, event: dict[str, Any]) -> str | None:
        if event.get("kind") == "node":
            return f"  > {event['node']}"
        if event.get("kind") != "branch":
            return None
        key = (event["branch_id"], event["round"])
        head = f"  [round {event['round']}] {event['branch_id']:<28} "
        phase = event.get("phase")
        if phase == "started":
            return head + f"started ({event['specialist']})"
        if phase == "progress":
            now = time.monotonic()
            if now - self._last.get(key, 0.0) < PROGRESS_INTERVAL_SECONDS:
                return None
            self._last[key] = now
            return head + f"{event.get('rows', 0):,} rows in {event.get('batch', 0)} record batches"
        if phase == "finished":
            status = event.get("status")
            if status == "success":
                quality = event.get("quality")
                q = f"quality {quality:.3f}, " if quality is not None else ""
                seconds = event.get("seconds")
                s = f" in {seconds:.2f}s" if seconds is not None else ""
                return head + f"success: {q}{event.get('rows_in', 0):,} rows in, {event.get('rows_out', 0):,} out{s}"
            if status == "empty":
                return head + f"empty: {EMPTY_NOTE}"
            return head + f"{status}: {event.get('error') or ''}".rstrip()
        return None


EMPTY_NOTE = "read no row, quality 0, left out of the merge and the success rate"


def _fmt(value: float | None, spec: str = ".3f") -> str:
    return "-" if value is None else format(value, spec)


def render_report(report, thread_id: str) -> str:
    """The final report as text: mode, branches, merged quality, attribution, timeline."""
    m = report.merge
    lines = [
        f"workflow {report.workflow_id}  run {report.run_id}  thread {thread_id}",
        f"status {report.status}  mode {report.workflow_mode}  rounds {report.rounds}",
        f"merged quality {m.overall_quality:.3f}  success rate {m.success_rate:.1%} "
        f"({m.successful_branches}/{m.allocated_branches})  integration confidence {m.integration_confidence:.3f}",
        "",
        "branches:",
        f"  {'branch':<28} {'specialist':<34} {'status':<10} {'round':>5} {'quality':>8} {'rows in':>10} {'rows out':>10} {'seconds':>8}",
    ]
    for b in report.branches:
        lines.append(
            f"  {b.branch_id:<28} {b.specialist:<34} {b.status:<10} {b.round:>5} {_fmt(b.metrics.quality):>8} "
            f"{b.metrics.rows_in:>10,} {b.metrics.rows_out:>10,} {_fmt(b.metrics.execution_seconds, '.2f'):>8}"
        )
        if b.error:
            lines.append(f"      {b.error}")
        if b.metrics.rows_pending:
            lines.append(
                f"      {b.metrics.rows_pending:,} row(s) pending: a last line without its newline, read by the next run"
            )
    if m.empty_branch_ids:
        lines.append(f"  empty ({EMPTY_NOTE}): {', '.join(m.empty_branch_ids)}")
    if m.cancelled_branch_ids:
        lines.append(f"  cancelled by the sync point: {', '.join(m.cancelled_branch_ids)}")
    if m.failed_branch_ids:
        lines.append(f"  failed: {', '.join(m.failed_branch_ids)}")
    lines += ["", "source attribution:"]
    for category, synthesis in m.categories.items():
        if not synthesis.sources_count:
            lines.append(f"  {category:<15} {synthesis.status}")
            continue
        shares = ", ".join(f"{b} {share:.1%}" for b, share in sorted(synthesis.source_attribution.items()))
        lines.append(f"  {category:<15} quality {synthesis.quality_score:.3f}  {shares}")
    lines += ["", "timeline:"]
    for entry in report.timeline:
        if entry.get("source") == "agent_factory":
            continue  # kept in the JSON report; too chatty for the summary
        stamp = str(entry.get("timestamp", ""))[11:23]
        details = {k: v for k, v in entry.items() if k not in ("timestamp", "event") and v not in (None, [], {})}
        detail_text = " ".join(f"{k}={_compact(v)}" for k, v in details.items())
        lines.append(f"  {stamp} {entry.get('event')}  {detail_text}".rstrip())
    if report.asset_uri:
        lines += ["", f"integrated output: {report.asset_uri}"]
    return "\n".join(lines)


def _compact(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3f}"
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":"), default=str)
    return str(value)


def _outcome_json(outcome) -> str:
    body: dict[str, Any] = {"thread_id": outcome.thread_id, "status": outcome.status}
    if outcome.paused_before:
        body["paused_before"] = outcome.paused_before
    if outcome.report is not None:
        body["report"] = outcome.report.model_dump(mode="json")
    return json.dumps(body, indent=2)


# --------------------------------------------------------------------------- commands


def _shown(url: str | None) -> str:
    """A checkpoint or ledger location as it may be printed: never with a password."""
    if not url:
        return "memory"
    if "://" not in url:
        return url
    from airflow_provider_orchestra.core.secrets import redact_url

    return redact_url(url)


def _open_factory(ledger: str | None, config=None):
    if ledger is None:
        return None  # the graph opens the default ledger (under the output root)
    from airflow_provider_orchestra import runtime

    return runtime.open_factory(ledger, config=config)


def _finish(outcome, args, out: TextIO, err: TextIO) -> int:
    if args.json:
        print(_outcome_json(outcome), file=out)
    if outcome.status == "paused":
        hint = f"orchestra resume {outcome.thread_id} --checkpoint {_shown(args.checkpoint)}"
        print(f"orchestra: paused before {', '.join(outcome.paused_before)}; continue with: {hint}", file=err)
        return EXIT_OK
    if not args.json:
        print(render_report(outcome.report, outcome.thread_id), file=out)
    if outcome.status == "approved":
        return EXIT_OK
    reason = outcome.report.timeline[-1].get("reason") if outcome.report and outcome.report.timeline else None
    print(f"orchestra: workflow ended {outcome.status}" + (f": {reason}" if reason else ""), file=err)
    return EXIT_NOT_APPROVED


def cmd_run(args, out: TextIO, err: TextIO) -> int:
    config = read_config_file(args.config)  # before the heavy imports: bad input fails fast

    from airflow_provider_orchestra.graph import run_workflow
    from airflow_provider_orchestra.graph.runner import new_thread_id
    from airflow_provider_orchestra.graph.workflow import INTERRUPTIBLE

    unknown = sorted(set(args.interrupt_before) - set(INTERRUPTIBLE))
    if unknown:
        raise CliError(f"--interrupt-before: unknown node(s) {unknown}; choose from {list(INTERRUPTIBLE)}")
    pauses = list(args.interrupt_before) or list(config.interrupt_before)
    if pauses and not args.checkpoint:
        raise CliError("pausing needs --checkpoint URL: an in-memory checkpoint ends with this process")
    thread_id = args.thread_id or new_thread_id(config)
    print(f"orchestra: run {config.workflow_id}, thread id {thread_id}, checkpoint {_shown(args.checkpoint)}", file=err)
    outcome = run_workflow(
        config,
        checkpoint=args.checkpoint,
        thread_id=thread_id,
        interrupt_before=pauses,
        factory=_open_factory(args.ledger, config),
        on_event=ProgressPrinter(err, quiet=args.quiet),
    )
    return _finish(outcome, args, out, err)


def cmd_resume(args, out: TextIO, err: TextIO) -> int:
    from airflow_provider_orchestra.graph import resume_workflow

    print(f"orchestra: resume thread id {args.thread_id}", file=err)
    outcome = resume_workflow(
        args.thread_id,
        checkpoint=args.checkpoint,
        interrupt_before=args.interrupt_before,
        factory=_open_factory(args.ledger),
        on_event=ProgressPrinter(err, quiet=args.quiet),
    )
    return _finish(outcome, args, out, err)


def cmd_validate(args, out: TextIO, err: TextIO) -> int:
    from airflow_provider_orchestra.core.routing import route
    from airflow_provider_orchestra.core.sync import order_sync_points

    config = read_config_file(args.config)
    if not args.offline:
        from airflow_provider_orchestra.specialists.io.preflight import source_problems

        problems = source_problems(config)
        if problems:
            print(f"orchestra: {args.config}: {len(problems)} problem(s) with its sources and sinks:", file=err)
            for problem in problems:
                print(f"  {problem}", file=err)
            return EXIT_BAD_INPUT
    checked = "sources not checked (--offline)" if args.offline else "sources and connections found"
    print(
        f"{args.config}: valid workflow config {config.workflow_id!r} with {len(config.batches)} batches; {checked}",
        file=out,
    )
    for batch in config.batches:
        print(f"  {batch.batch_id:<28} {batch.source.kind:<8} -> {route(batch.type, batch.source_type, batch.priority)}", file=out)
    points = order_sync_points(config.sync_points, config.branch_dependencies, [b.batch_id for b in config.batches])
    for name, members in points:
        print(f"  sync point {name}: {', '.join(members)}", file=out)
    return EXIT_OK


def cmd_schema(args, out: TextIO, err: TextIO) -> int:
    from airflow_provider_orchestra.core.models import WorkflowConfig

    print(json.dumps(WorkflowConfig.model_json_schema(), indent=2), file=out)
    return EXIT_OK


def cmd_sample(args, out: TextIO, err: TextIO) -> int:
    import yaml

    from airflow_provider_orchestra.runtime import load_config
    from airflow_provider_orchestra.sample import generate_sample_data, sample_config

    root = Path(args.dir).resolve()
    data_dir, output_dir = root / "data", root / "output"
    try:
        generate_sample_data(data_dir)
    except OSError as exc:
        raise CliError(f"cannot write sample data under {root}: {exc}") from None
    config = sample_config(data_dir, output_dir, postgres_conn_id=args.postgres_conn_id)
    load_config(config)  # the sample must be valid before anyone runs it
    path = root / SAMPLE_CONFIG_NAME
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    print(str(path), file=out)
    print(f"orchestra: sample data in {data_dir}; run it with: orchestra run {path}", file=err)
    return EXIT_OK


# --------------------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="orchestra",
        description="Run the orchestra workflow natively as a LangGraph graph.",
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def run_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("--json", action="store_true", help="print the outcome as JSON only (stdout)")
        p.add_argument("-q", "--quiet", action="store_true", help="no branch progress on stderr")
        p.add_argument(
            "--ledger",
            metavar="URL",
            help="agent factory ledger (SQLite path or postgresql:// URL); default: under the output root, or $ORCHESTRA_LEDGER_URL",
        )
        p.add_argument(
            "--interrupt-before",
            nargs="+",
            default=[],
            metavar="NODE",
            help="pause before sync_point_manager and/or quality_validator",
        )

    run = sub.add_parser("run", help="run a workflow config")
    run.add_argument("config", metavar="CONFIG", help="YAML or JSON workflow config")
    run.add_argument(
        "--checkpoint",
        metavar="URL",
        default=os.environ.get(CHECKPOINT_URL_ENV),
        help=f"SQLite path or postgresql:// URL; default: ${CHECKPOINT_URL_ENV}, else in memory",
    )
    run.add_argument("--thread-id", metavar="ID", help="thread id of the run (default: generated)")
    run_options(run)
    run.set_defaults(handler=cmd_run)

    resume = sub.add_parser("resume", help="continue a paused or interrupted run")
    resume.add_argument("thread_id", metavar="THREAD_ID")
    resume.add_argument(
        "--checkpoint",
        metavar="URL",
        default=os.environ.get(CHECKPOINT_URL_ENV),
        required=not os.environ.get(CHECKPOINT_URL_ENV),
        help=f"where the run was checkpointed; default: ${CHECKPOINT_URL_ENV}",
    )
    run_options(resume)
    resume.set_defaults(handler=cmd_resume)

    validate = sub.add_parser(
        "validate",
        help="validate a workflow config, check its sources exist and connections are defined, show its routing",
    )
    validate.add_argument("config", metavar="CONFIG")
    validate.add_argument(
        "--offline",
        action="store_true",
        help="only validate the config: skip checking data roots, source files and connections",
    )
    validate.set_defaults(handler=cmd_validate)

    schema = sub.add_parser("schema", help="print the JSON schema of the workflow config")
    schema.set_defaults(handler=cmd_schema)

    sample = sub.add_parser("sample", help="write sample data and a config for it into DIR")
    sample.add_argument("dir", metavar="DIR")
    sample.add_argument("--postgres-conn-id", metavar="ID", help="also load the revenue aggregation into this connection")
    sample.set_defaults(handler=cmd_sample)
    return parser


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return " ".join(text.split()) if text else type(exc).__name__


def main(argv: Sequence[str] | None = None, *, out: TextIO | None = None, err: TextIO | None = None) -> int:
    out = out or sys.stdout
    err = err or sys.stderr
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.WARNING,
        stream=err,
        format="%(levelname)s %(name)s: %(message)s",
    )
    from airflow_provider_orchestra.core.errors import OrchestraError

    try:
        return args.handler(args, out, err)
    except KeyboardInterrupt:
        print("orchestra: interrupted", file=err)
        return EXIT_INTERRUPTED
    except (CliError, OrchestraError) as exc:
        if args.debug:
            raise
        print(f"orchestra: error: {_one_line(exc)}", file=err)
        return EXIT_BAD_INPUT
    except Exception as exc:
        if args.debug:
            raise
        print(f"orchestra: error: {type(exc).__name__}: {_one_line(exc)} (rerun with --debug for details)", file=err)
        return EXIT_NOT_APPROVED


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
