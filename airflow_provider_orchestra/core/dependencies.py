"""Ordering by declared dependencies (branches, sync points)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from graphlib import CycleError, TopologicalSorter

from airflow_provider_orchestra.core.errors import CyclicDependencyError


def topological_order(nodes: Iterable[str], dependencies: Mapping[str, Iterable[str]]) -> list[str]:
    """Nodes ordered so each comes after everything it depends on; ties keep input order.

    Raises CyclicDependencyError naming the cycle.
    """
    ordered_nodes = list(dict.fromkeys(nodes))
    sorter: TopologicalSorter[str] = TopologicalSorter()
    for node in ordered_nodes:
        sorter.add(node, *dependencies.get(node, ()))
    try:
        sorter.prepare()
    except CycleError as exc:
        cycle = " -> ".join(exc.args[1])
        raise CyclicDependencyError(
            f"branch_dependencies: cycle {cycle}", ["branch_dependencies"]
        ) from None
    rank = {n: i for i, n in enumerate(ordered_nodes)}
    order: list[str] = []
    while sorter.is_active():
        ready = sorted(sorter.get_ready(), key=lambda n: rank.get(n, len(rank)))
        order.extend(ready)
        sorter.done(*ready)
    return order
