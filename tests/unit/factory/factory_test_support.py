"""Small templates and capacities shared by the factory tests."""

from __future__ import annotations

from airflow_provider_orchestra.core.models import ResourceRequest
from airflow_provider_orchestra.factory import LedgerCapacity


class RecordingAgent:
    """A template that keeps what it was built from."""

    def __init__(self, spec, lease):
        self.spec = spec
        self.lease = lease


class BrokenTemplate:
    def __init__(self, spec, lease):
        raise RuntimeError(f"cannot build {spec.agent_type}: missing credentials")


SMALL = ResourceRequest(cpu=0.5, memory_mb=256)
TEST_CAPACITY = LedgerCapacity(cpu=4, memory_mb=8192, max_agents=4)
