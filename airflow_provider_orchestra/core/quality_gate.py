"""The quality gate: approve, send back for a bounded revision round, or stop."""

from __future__ import annotations

from airflow_provider_orchestra.core.models import GateResult, MergeReport, QualityGatePolicy


def decide(
    report: MergeReport, policy: QualityGatePolicy, round: int, iteration_limit: int
) -> GateResult:
    """Thresholds come from ``policy`` (defaults: approve at quality >= 0.8 with success
    rate >= 0.75; critical below quality 0.3).

    - no successful branch, or overall quality < critical_quality -> critical_failure
    - overall quality >= approve_quality and success_rate >= approve_success_rate -> approved
    - otherwise needs_revision; in the last allowed round (round >= iteration_limit) that is
      final: the workflow ends with status revision_limit_reached.
    """
    q, rate = report.overall_quality, report.success_rate
    if report.successful_branches == 0:
        reason = "no branch succeeded"
        if report.empty_branch_ids:
            reason += f" ({', '.join(report.empty_branch_ids)} read no row)"
        return GateResult(decision="critical_failure", reason=reason, final=True, round=round)
    if q < policy.critical_quality:
        return GateResult(
            decision="critical_failure",
            reason=f"overall quality {q:.3f} < critical {policy.critical_quality}",
            final=True,
            round=round,
        )
    if q >= policy.approve_quality and rate >= policy.approve_success_rate:
        return GateResult(
            decision="approved",
            reason=f"quality {q:.3f} >= {policy.approve_quality}, success rate {rate:.3f} >= {policy.approve_success_rate}",
            final=True,
            round=round,
        )
    reason = f"quality {q:.3f} (needs {policy.approve_quality}), success rate {rate:.3f} (needs {policy.approve_success_rate})"
    final = round >= iteration_limit
    if final:
        reason += f"; revision limit {iteration_limit} reached"
    return GateResult(decision="needs_revision", reason=reason, final=final, round=round)


def final_status(gate: GateResult) -> str:
    """The workflow's end status for a final gate result."""
    if gate.decision == "approved":
        return "approved"
    if gate.decision == "critical_failure":
        return "critical_failure"
    return "revision_limit_reached"
