"""The agent factory: capabilities, specifications, the template registry, selection,
requirement analysis, the shared resource ledger and the performance history.

Imports core/ only; never Airflow or LangGraph.
"""

from airflow_provider_orchestra.core.errors import (
    AgentCreationError,
    LedgerUnavailableError,
    NoSuitableAgentError,
    ResourceUnavailableError,
)
from airflow_provider_orchestra.factory.capabilities import (
    Capability,
    UnknownCapabilityError,
    parse_capabilities,
)
from airflow_provider_orchestra.factory.claims import DEFAULT_CLAIM_TTL_SECONDS, RunClaim, RunClaims, RunInUseError
from airflow_provider_orchestra.factory.factory import AgentFactory
from airflow_provider_orchestra.factory.history import (
    NEVER_RUN_SUCCESS_RATE,
    PerformanceHistory,
    TemplateStats,
)
from airflow_provider_orchestra.factory.ledger import (
    DEFAULT_LEASE_TTL_SECONDS,
    Lease,
    LeaseLostError,
    LedgerCapacity,
    LedgerSnapshot,
    ResourceLedger,
    ResourceUsage,
)
from airflow_provider_orchestra.factory.registry import (
    TemplateEntry,
    TemplateRegistrationError,
    TemplateRegistry,
    UnknownAgentTypeError,
    UnknownTemplateSetError,
    default_registry,
    load_template_set,
    register_agent_template,
    register_template_set,
)
from airflow_provider_orchestra.factory.requirements import (
    VALIDATION_QUALITY_REQUIRED,
    RequirementAnalysis,
    analyze_requirements,
    branch_requirements,
    is_high_volume,
)
from airflow_provider_orchestra.factory.selection import (
    SPECIALIST_CAPABILITIES,
    CandidateScore,
    required_capabilities_for,
    resource_efficiency,
    score_candidates,
    select_agent_type,
)
from airflow_provider_orchestra.factory.specification import AgentSpecification, TaskRequirements
from airflow_provider_orchestra.factory.store import (
    DEFAULT_NAMESPACE,
    PostgresStore,
    SQLiteStore,
    Store,
    open_store,
)

__all__ = [
    "DEFAULT_CLAIM_TTL_SECONDS",
    "DEFAULT_LEASE_TTL_SECONDS",
    "DEFAULT_NAMESPACE",
    "NEVER_RUN_SUCCESS_RATE",
    "SPECIALIST_CAPABILITIES",
    "VALIDATION_QUALITY_REQUIRED",
    "AgentCreationError",
    "AgentFactory",
    "AgentSpecification",
    "CandidateScore",
    "Capability",
    "Lease",
    "LeaseLostError",
    "LedgerCapacity",
    "LedgerSnapshot",
    "LedgerUnavailableError",
    "NoSuitableAgentError",
    "PerformanceHistory",
    "PostgresStore",
    "RequirementAnalysis",
    "ResourceLedger",
    "ResourceUnavailableError",
    "ResourceUsage",
    "RunClaim",
    "RunClaims",
    "RunInUseError",
    "SQLiteStore",
    "Store",
    "TaskRequirements",
    "TemplateEntry",
    "TemplateRegistrationError",
    "TemplateRegistry",
    "TemplateStats",
    "UnknownAgentTypeError",
    "UnknownCapabilityError",
    "UnknownTemplateSetError",
    "analyze_requirements",
    "branch_requirements",
    "default_registry",
    "is_high_volume",
    "load_template_set",
    "open_store",
    "parse_capabilities",
    "register_agent_template",
    "register_template_set",
    "required_capabilities_for",
    "resource_efficiency",
    "score_candidates",
    "select_agent_type",
]
