"""Choosing a template for a set of required capabilities.

score = capability_match * 0.4 + success_rate * 0.4 + resource_efficiency * 0.2

- capability_match = len(required) / len(template capabilities): 1 for a template that
  does exactly what is asked, less for a generalist.
- success_rate = successes / runs from the performance history (1.0 when never run).
- resource_efficiency: see :func:`resource_efficiency`.

Ties go to the alphabetically first agent type, so every process picks the same.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping

from pydantic import BaseModel, ConfigDict

from airflow_provider_orchestra.core.errors import NoSuitableAgentError
from airflow_provider_orchestra.core.models import ResourceRequest
from airflow_provider_orchestra.factory.capabilities import Capability, capability_names
from airflow_provider_orchestra.factory.history import NEVER_RUN_SUCCESS_RATE
from airflow_provider_orchestra.factory.ledger import ResourceUsage
from airflow_provider_orchestra.factory.registry import TemplateRegistry

CAPABILITY_MATCH_WEIGHT = 0.4
SUCCESS_RATE_WEIGHT = 0.4
RESOURCE_EFFICIENCY_WEIGHT = 0.2

class _RequiredCapabilities(Mapping[str, frozenset[Capability]]):
    """specialist name -> the capabilities its branches ask of an agent (a live view of
    core.specialists, where built-in and registered specialists declare them)."""

    def __getitem__(self, name: str) -> frozenset[Capability]:
        from airflow_provider_orchestra.core.specialists import UnknownSpecialistError, specialist_info

        try:
            return specialist_info(name).capabilities
        except UnknownSpecialistError:
            raise KeyError(name) from None

    def __iter__(self) -> Iterator[str]:
        from airflow_provider_orchestra.core.specialists import specialist_names

        return iter(specialist_names())

    def __len__(self) -> int:
        from airflow_provider_orchestra.core.specialists import specialist_names

        return len(specialist_names())


SPECIALIST_CAPABILITIES: Mapping[str, frozenset[Capability]] = _RequiredCapabilities()
"""What each workflow branch (a registered specialist) asks of its agent."""


def required_capabilities_for(specialist_name: str) -> frozenset[Capability]:
    """The capabilities a branch of ``specialist_name`` asks for; UnknownSpecialistError
    names the registered specialists when it is unknown."""
    from airflow_provider_orchestra.core.specialists import specialist_info

    return specialist_info(specialist_name).capabilities


class CandidateScore(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    agent_type: str
    capability_match: float
    success_rate: float
    resource_efficiency: float
    score: float


def resource_efficiency(need: ResourceRequest, free: ResourceUsage) -> float:
    """Share of the free pool the template leaves to others, on its tighter dimension:

        min over d in (cpu, memory_mb) of  max(0, 1 - need_d / free_d)

    1 for a template that needs almost nothing of what is free, 0 for one that would take
    all of it or does not fit (free_d = 0 counts as not fitting). Lighter templates win,
    and more so when the pool is tight.
    """
    shares = []
    for needed, available in ((need.cpu, free.cpu), (need.memory_mb, free.memory_mb)):
        shares.append(max(0.0, 1.0 - needed / available) if available > 0 else 0.0)
    return min(shares)


def composite_score(capability_match: float, success_rate: float, efficiency: float) -> float:
    return (
        capability_match * CAPABILITY_MATCH_WEIGHT
        + success_rate * SUCCESS_RATE_WEIGHT
        + efficiency * RESOURCE_EFFICIENCY_WEIGHT
    )


def score_candidates(
    registry: TemplateRegistry,
    required: Iterable[Capability],
    success_rates: Mapping[str, float],
    free: ResourceUsage,
    specialist: str | None = None,
) -> list[CandidateScore]:
    """Every template covering ``required`` (and able to run ``specialist``, when given),
    best first. Raises NoSuitableAgentError naming the capabilities when none does."""
    needed = frozenset(required)
    if not needed:
        raise NoSuitableAgentError("no capabilities required: nothing to select an agent for")
    candidates = registry.candidates_for(needed, specialist=specialist)
    if not candidates:
        runs = f" that runs specialist {specialist!r}" if specialist else ""
        raise NoSuitableAgentError(
            f"no registered agent template{runs} covers the required capabilities "
            f"{capability_names(needed)}; registered: "
            + (
                ", ".join(
                    f"{e.agent_type} {capability_names(e.capabilities)}" for e in registry.entries()
                )
                or "none"
            )
        )
    scored = []
    for entry in candidates:
        match = len(needed) / len(entry.capabilities)
        rate = success_rates.get(entry.agent_type, NEVER_RUN_SUCCESS_RATE)
        efficiency = resource_efficiency(entry.resources, free)
        scored.append(
            CandidateScore(
                agent_type=entry.agent_type,
                capability_match=match,
                success_rate=rate,
                resource_efficiency=efficiency,
                score=composite_score(match, rate, efficiency),
            )
        )
    # Rounded so that float noise cannot beat the name order between equal scores.
    scored.sort(key=lambda c: (-round(c.score, 12), c.agent_type))
    return scored


def select_agent_type(
    registry: TemplateRegistry,
    required: Iterable[Capability],
    success_rates: Mapping[str, float],
    free: ResourceUsage,
    specialist: str | None = None,
) -> CandidateScore:
    """The best candidate of :func:`score_candidates`."""
    return score_candidates(registry, required, success_rates, free, specialist)[0]
