"""Distributed connected components (Beam): the star rounds of ``components.py``, unrolled.

One round is two ``GroupByKey``s (large-star, then small-star, see ``components.py``). A pipeline
cannot loop on data, so the rounds are unrolled ``max_rounds`` times. Each round's changed-edge
total is a one-element PCollection; it is the side input of the next round's gate (early stop: once
it is 0 the gate sets all edges aside, so the remaining rounds run on empty collections and cost next
to nothing) and, with ``with_rounds``, part of the transform's second output: the changed-edge count
of every round, from which ``components.rounds_needed`` reads convergence. The transform raises
``ComponentsNotConverged`` inside the pipeline when the last round still changed something. No step
holds more than one node's neighbourhood in memory.

Counters (``<namespace>:round_NN_changed``, ``round_NN_edges``: the edges that entered round NN) are
for monitoring only; nothing reads them to decide or check anything.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import apache_beam as beam
from apache_beam.metrics import Metrics

from pipelines.dedup.components import ComponentsNotConverged, large_star, small_star

NAMESPACE = "corpusforge.dedup.cc"
CHANGES = "changes"
DONE = "done"


class _StarStepFn(beam.DoFn):
    """Applies ``large_star`` or ``small_star`` to a grouped node; emits its changed-edge count."""

    def __init__(self, step: Any, namespace: str, round_index: int) -> None:
        self._step = step
        self._namespace = namespace
        self._name = f"round_{round_index:02d}_changed"

    def setup(self) -> None:
        self._changed = Metrics.counter(self._namespace, self._name)

    def process(self, element: tuple[Any, Iterable[Any]]):
        node, nbrs = element
        out, changed = self._step(node, nbrs)
        if changed:
            self._changed.inc(changed)
            yield beam.pvalue.TaggedOutput(CHANGES, changed)
        yield from out


class _UndirectedFn(beam.DoFn):
    """Both directions of an edge; counts the edges entering the round (``round_NN_edges``)."""

    def __init__(self, namespace: str, round_index: int) -> None:
        self._namespace = namespace
        self._name = f"round_{round_index:02d}_edges"

    def setup(self) -> None:
        self._edges = Metrics.counter(self._namespace, self._name)

    def process(self, edge: tuple[Any, Any]):
        self._edges.inc()
        yield edge
        yield edge[1], edge[0]


class _StarRound(beam.PTransform):
    """One large-star + small-star round over ``(hi, lo)`` edges -> ``(edges, changed-edge counts)``."""

    def __init__(self, namespace: str, round_index: int) -> None:
        super().__init__()
        self._namespace = namespace
        self._round = round_index

    def expand(self, edges):
        def step(fn: Any) -> beam.ParDo:
            dofn = _StarStepFn(fn, self._namespace, self._round)
            return beam.ParDo(dofn).with_outputs(CHANGES, main="edges")

        large = (
            edges
            | "Undirected" >> beam.ParDo(_UndirectedFn(self._namespace, self._round))
            | "ByNode" >> beam.GroupByKey()
            | "LargeStar" >> step(large_star)
        )
        small = large.edges | "ByLarger" >> beam.GroupByKey() | "SmallStar" >> step(small_star)
        changes = (large[CHANGES], small[CHANGES]) | "Changes" >> beam.Flatten()
        return small.edges, changes


def _gate(edge: tuple[Any, Any], changed_before: int):
    """Edges go on to the next round while the previous round changed something, else aside."""
    if changed_before:
        yield edge
    else:
        yield beam.pvalue.TaggedOutput(DONE, edge)


def _raise_if_changed(total: int, max_rounds: int) -> int:
    if total:
        raise ComponentsNotConverged(
            f"connected components did not converge in {max_rounds} rounds ({total} edges changed in the "
            "last one); raise dedup.max_cc_rounds"
        )
    return total


def _canonical_edge(edge: tuple[Any, Any]):
    u, v = edge
    if u != v:
        yield (v, u) if u < v else (u, v)


def _in_order(indexed: Iterable[tuple[int, int]]) -> list[int]:
    return [n for _, n in sorted(indexed)]


class ConnectedComponents(beam.PTransform):
    """PCollection of edges ``(u, v)`` -> PCollection of ``(node, smallest node id of its component)``.

    Every endpoint appears exactly once in the output (a self-loop ``(u, u)`` makes ``u`` a singleton).
    ``on_unconverged="raise"`` fails the pipeline with ``ComponentsNotConverged`` when round
    ``max_rounds`` still changed edges; ``"count"`` only sets the counter ``<namespace>:unconverged``.
    With ``with_rounds`` the output is ``(labels, rounds)``, ``rounds`` one element: the list of
    changed-edge counts of the ``max_rounds`` rounds (see ``components.rounds_needed``).
    """

    def __init__(
        self,
        max_rounds: int = 30,
        namespace: str = NAMESPACE,
        on_unconverged: str = "raise",
        with_rounds: bool = False,
    ) -> None:
        super().__init__()
        if max_rounds < 1:
            raise ValueError("max_rounds must be >= 1")
        if on_unconverged not in ("raise", "count"):
            raise ValueError("on_unconverged must be 'raise' or 'count'")
        self._max_rounds = max_rounds
        self._namespace = namespace
        self._on_unconverged = on_unconverged
        self._with_rounds = with_rounds

    def expand(self, edges):
        nodes = edges | "Nodes" >> beam.FlatMap(lambda e: ((e[0], e[0]), (e[1], e[1])))
        current = edges | "Canonical" >> beam.FlatMap(_canonical_edge) | "DistinctInput" >> beam.Distinct()
        parked: list[Any] = []
        totals: list[Any] = []
        for i in range(self._max_rounds):
            if totals:
                gated = current | f"Gate{i:02d}" >> beam.FlatMap(
                    _gate, beam.pvalue.AsSingleton(totals[-1])
                ).with_outputs(DONE, main="active")
                parked.append(gated[DONE])
                current = gated.active
            current, changes = current | f"Round{i:02d}" >> _StarRound(self._namespace, i)
            totals.append(changes | f"Changes{i:02d}" >> beam.CombineGlobally(sum))
        if self._on_unconverged == "raise":
            _ = totals[-1] | "CheckConverged" >> beam.Map(_raise_if_changed, self._max_rounds)
        else:
            counter_ns = self._namespace

            def _flag(n: int) -> int:
                if n:
                    Metrics.counter(counter_ns, "unconverged").inc()
                return n

            _ = totals[-1] | "FlagUnconverged" >> beam.Map(_flag)
        final = (*parked, current) | "FinalEdges" >> beam.Flatten()
        labels = final | "Labels" >> beam.FlatMap(lambda e: ((e[0], e[1]), (e[1], e[1])))
        labels = (labels, nodes) | "AllLabels" >> beam.Flatten() | "MinLabel" >> beam.CombinePerKey(min)
        if not self._with_rounds:
            return labels
        rounds = (
            [total | f"Index{i:02d}" >> beam.Map(lambda n, i: (i, n), i) for i, total in enumerate(totals)]
            | "AllRounds" >> beam.Flatten()
            | "RoundList" >> beam.combiners.ToList()
            | "InOrder" >> beam.Map(_in_order)
        )
        return labels, rounds
