"""Connected components of the near-duplicate graph, distributed (Beam) and single-node (reference).

The Beam transform alternates the *large-star* and *small-star* operations of Kiveris et al.,
"Connected Components in MapReduce and Beyond" (SoCC 2014). Edges are kept as ``(hi, lo)`` with
``hi > lo`` (string order); one round is two ``GroupByKey``s:

* large-star: group each node ``u`` with all its neighbours; ``m`` = min of ``u`` and its
  neighbours; every neighbour ``v > u`` is re-attached to ``m``. Changed edges: ``v > u`` when ``m < u``.
* small-star: group each node ``u`` with its smaller neighbours ``N``; ``m = min(N)``; ``u`` and every
  ``v`` in ``N`` are attached to ``m``. Changed edges: ``|N| - 1``.

When a round changes nothing, every component is a star around its minimum node, so each node's
label is the smallest node id of its component. A pipeline cannot loop on data, so the rounds are
unrolled ``max_rounds`` times; each round adds its changed-edge count to the Beam counter
``<namespace>:round_NN_changed`` (``cc_convergence`` reads them back). Early stop: every round after
the first starts with a gate that reads the previous round's global change count (a side input of
one number); once it is 0 the gate sets all edges aside, so the remaining unrolled rounds run on empty
collections and cost next to nothing (counter ``round_NN_edges``: the edges that entered round NN). The transform raises ``ComponentsNotConverged`` inside the
pipeline when the last round still changed something. No step holds more than one node's
neighbourhood in memory.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from typing import Any

import apache_beam as beam
from apache_beam.metrics import Metrics

NAMESPACE = "corpusforge.dedup.cc"


class ComponentsNotConverged(RuntimeError):
    """The last unrolled connected-components round still changed edges."""


# -- pure reference -------------------------------------------------------------------------------


def union_find_components(edges: Iterable[tuple[Hashable, Hashable]]) -> dict[Any, Any]:
    """``node -> smallest node of its component`` for every endpoint of ``edges`` (single node)."""
    parent: dict[Any, Any] = {}

    def find(x: Any) -> Any:
        root = x
        while parent[root] != root:
            root = parent[root]
        while parent[x] != root:  # path compression
            parent[x], x = root, parent[x]
        return root

    for u, v in edges:
        parent.setdefault(u, u)
        parent.setdefault(v, v)
        ru, rv = find(u), find(v)
        if ru != rv:
            # The smaller id becomes the root, so a root is always its component's minimum.
            if rv < ru:
                ru, rv = rv, ru
            parent[rv] = ru
    return {x: find(x) for x in parent}


def large_star(node: Any, neighbours: Iterable[Any]) -> tuple[list[tuple[Any, Any]], int]:
    """One node's large-star step: ``(new (hi, lo) edges, number of changed edges)``."""
    nbrs = set(neighbours)
    nbrs.discard(node)
    m = min(nbrs | {node})
    larger = [v for v in nbrs if v > node]
    return [(v, m) for v in larger], (len(larger) if m != node else 0)


def small_star(node: Any, smaller: Iterable[Any]) -> tuple[list[tuple[Any, Any]], int]:
    """One node's small-star step (``smaller`` are its neighbours below it): ``(edges, changed)``."""
    nbrs = set(smaller)
    nbrs.discard(node)
    if not nbrs:
        return [], 0
    m = min(nbrs)
    return [(v, m) for v in nbrs | {node} if v != m], len(nbrs) - 1


def star_components(
    edges: Iterable[tuple[Hashable, Hashable]], max_rounds: int = 100
) -> tuple[dict[Any, Any], list[int]]:
    """Single-process run of the same rounds as ``ConnectedComponents``: ``(labels, changes per round)``."""
    nodes: set[Any] = set()
    current: set[tuple[Any, Any]] = set()
    for u, v in edges:
        nodes.update((u, v))
        if u != v:
            current.add((max(u, v), min(u, v)))
    history: list[int] = []
    for _ in range(max_rounds):
        adj: dict[Any, set[Any]] = {}
        for hi, lo in current:
            adj.setdefault(hi, set()).add(lo)
            adj.setdefault(lo, set()).add(hi)
        changed = 0
        after_large: set[tuple[Any, Any]] = set()
        for u, nb in adj.items():
            out, n = large_star(u, nb)
            after_large.update(out)
            changed += n
        smaller: dict[Any, set[Any]] = {}
        for hi, lo in after_large:
            smaller.setdefault(hi, set()).add(lo)
        current = set()
        for u, nb in smaller.items():
            out, n = small_star(u, nb)
            current.update(out)
            changed += n
        history.append(changed)
        if changed == 0:
            break
    labels = {n: n for n in nodes}
    for hi, lo in current:
        labels[hi] = min(labels[hi], lo)
    return labels, history


# -- Beam ----------------------------------------------------------------------------------------


def _round_counter(round_index: int) -> str:
    return f"round_{round_index:02d}_changed"


CHANGES = "changes"


class _StarStepFn(beam.DoFn):
    """Applies ``large_star`` or ``small_star`` to a grouped node; counts changed edges."""

    def __init__(self, step: Any, namespace: str, round_index: int) -> None:
        self._step = step
        self._namespace = namespace
        self._name = _round_counter(round_index)

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


DONE = "done"


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


class ConnectedComponents(beam.PTransform):
    """PCollection of edges ``(u, v)`` -> PCollection of ``(node, smallest node id of its component)``.

    Every endpoint appears exactly once in the output (a self-loop ``(u, u)`` makes ``u`` a singleton).
    ``on_unconverged="raise"`` fails the pipeline with ``ComponentsNotConverged`` when round
    ``max_rounds`` still changed edges; ``"count"`` only sets the counter ``<namespace>:unconverged``.
    """

    def __init__(
        self, max_rounds: int = 30, namespace: str = NAMESPACE, on_unconverged: str = "raise"
    ) -> None:
        super().__init__()
        if max_rounds < 1:
            raise ValueError("max_rounds must be >= 1")
        if on_unconverged not in ("raise", "count"):
            raise ValueError("on_unconverged must be 'raise' or 'count'")
        self._max_rounds = max_rounds
        self._namespace = namespace
        self._on_unconverged = on_unconverged

    def expand(self, edges):
        nodes = edges | "Nodes" >> beam.FlatMap(lambda e: ((e[0], e[0]), (e[1], e[1])))
        current = edges | "Canonical" >> beam.FlatMap(_canonical_edge) | "DistinctInput" >> beam.Distinct()
        parked = []
        total = None
        for i in range(self._max_rounds):
            if total is not None:
                gated = current | f"Gate{i:02d}" >> beam.FlatMap(
                    _gate, beam.pvalue.AsSingleton(total)
                ).with_outputs(DONE, main="active")
                parked.append(gated[DONE])
                current = gated.active
            current, changes = current | f"Round{i:02d}" >> _StarRound(self._namespace, i)
            total = changes | f"Changes{i:02d}" >> beam.CombineGlobally(sum)
        if self._on_unconverged == "raise":
            _ = total | "CheckConverged" >> beam.Map(_raise_if_changed, self._max_rounds)
        else:
            counter_ns = self._namespace

            def _flag(n: int) -> int:
                if n:
                    Metrics.counter(counter_ns, "unconverged").inc()
                return n

            _ = total | "FlagUnconverged" >> beam.Map(_flag)
        final = (*parked, current) | "FinalEdges" >> beam.Flatten()
        labels = final | "Labels" >> beam.FlatMap(lambda e: ((e[0], e[1]), (e[1], e[1])))
        return (labels, nodes) | "AllLabels" >> beam.Flatten() | "MinLabel" >> beam.CombinePerKey(min)


def cc_convergence(metrics: Any, max_rounds: int, namespace: str = NAMESPACE) -> tuple[int, bool]:
    """``(rounds needed, converged)`` from a finished pipeline's ``result.metrics()``.

    Rounds needed = the rounds that changed edges before the first round without changes;
    ``converged`` is False when all ``max_rounds`` unrolled rounds changed something.
    """
    from apache_beam.metrics.metric import MetricsFilter

    changed: dict[int, int] = {}
    for c in metrics.query(MetricsFilter().with_namespace(namespace))["counters"]:
        name = c.key.metric.name
        if name.startswith("round_") and name.endswith("_changed"):
            value = c.committed if c.committed is not None else c.attempted
            changed[int(name.split("_")[1])] = changed.get(int(name.split("_")[1]), 0) + int(value or 0)
    for i in range(max_rounds):
        if changed.get(i, 0) == 0:
            return i, True
    return max_rounds, False
