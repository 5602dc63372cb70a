"""Distributed connected components (Beam): the star rounds of ``components.py``.

One round (:class:`StarRound`) is two ``GroupByKey``s (large-star, then small-star, see
``components.py``) and yields the round's edges and its changed-edge counts. Rounds repeat until one
changes nothing, which a pipeline cannot decide on its own data, so there are two drivers:

* :func:`iterate_components` (used by the dedup job): a loop of small pipelines with files between
  rounds. :class:`StartComponents` writes the canonical input edges (``edges-00``) and runs round 0
  inside the pipeline that computed the edges; every further round ``k`` is its own pipeline reading
  ``edges-k`` and writing ``edges-(k+1)`` plus its changed-edge total (a ``WriteStat``); the driver
  stops after the first round that changed nothing and :class:`ComponentLabels` reads the labels from
  that round's output. Each pipeline is one round, whatever ``max_rounds`` is, so the job graph is
  the same size on every runner and no round waits on a side input.
* :class:`ConnectedComponents`: the rounds unrolled ``max_rounds`` times inside one pipeline, each
  gated by the previous round's total as a side input (after a round without changes the remaining
  rounds run on empty collections). For small graphs and tests; its graph grows with ``max_rounds``.

Both report the changed-edge count of every round they ran (``components.rounds_needed`` reads
convergence from it) and fail with ``ComponentsNotConverged`` when the last allowed round still
changed something. No step holds more than one node's neighbourhood in memory.

Counters (``<namespace>:round_NN_changed``, ``round_NN_edges``: the edges that entered round NN) are
for monitoring only; nothing reads them to decide or check anything.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import apache_beam as beam
import pyarrow as pa
from apache_beam.metrics import Metrics

from pipelines import storage
from pipelines.beam_scratch import ReadScratch, WriteScratch
from pipelines.beam_stage import WriteStat, read_stat
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


class StarRound(beam.PTransform):
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
        raise ComponentsNotConverged(_not_converged(max_rounds, total))
    return total


def _not_converged(max_rounds: int, total: int) -> str:
    return (
        f"connected components did not converge in {max_rounds} rounds ({total} edges changed in the "
        "last one); raise dedup.max_cc_rounds"
    )


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
            current, changes = current | f"Round{i:02d}" >> StarRound(self._namespace, i)
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


# --------------------------------------------------------------------------------------------------
# the driver loop: one pipeline per round, edges in scratch files between rounds

EDGES = pa.schema([pa.field("hi", pa.string(), nullable=False), pa.field("lo", pa.string(), nullable=False)])


def edges_dir(work: str, k: int) -> str:
    """Scratch table of the edges entering round ``k`` (``edges-00``: the canonical input edges)."""
    return f"{work}/edges-{k:02d}"


def round_stat(k: int) -> str:
    """Name of the statistic holding round ``k``'s changed-edge total."""
    return f"cc_round_{k:02d}"


def _oriented_edge(edge: tuple[Any, Any]) -> tuple[Any, Any]:
    """``(hi, lo)``; a self-loop stays in ``edges-00``, which is also the node list (its node is
    labelled, as a singleton), and is left out of round 0 as ``ConnectedComponents`` leaves it out."""
    u, v = edge
    return (v, u) if u < v else (u, v)


def _edge_row(edge: tuple[str, str]) -> dict[str, str]:
    return {"hi": edge[0], "lo": edge[1]}


def _row_edge(row: dict[str, str]) -> tuple[str, str]:
    return row["hi"], row["lo"]


class _RoundOutputs(beam.PTransform):
    """Round ``k`` over ``(hi, lo)`` edges: its output edges to ``edges-(k+1)``, its changed-edge total
    to the statistic ``cc_round_kk`` of ``version_dir``."""

    def __init__(self, work: str, version_dir: str, k: int, namespace: str) -> None:
        super().__init__()
        self._work, self._version_dir, self._k, self._namespace = work, version_dir, k, namespace

    def expand(self, edges: beam.PCollection) -> beam.PCollection:
        out, changes = edges | "Round" >> StarRound(self._namespace, self._k)
        _ = (
            out
            | "Rows" >> beam.Map(_edge_row)
            | "WriteEdges" >> WriteScratch(edges_dir(self._work, self._k + 1), EDGES)
        )
        return (
            changes | "Total" >> beam.CombineGlobally(sum) | WriteStat(self._version_dir, round_stat(self._k))
        )


class StartComponents(beam.PTransform):
    """Edges ``(u, v)`` (string node ids) -> ``edges-00`` (canonical, distinct) and round 0.

    Applied in the pipeline that computes the edges, so a graph that needs no further round costs no
    extra pipeline; :func:`iterate_components` runs the rest.
    """

    def __init__(self, work: str, version_dir: str, namespace: str = NAMESPACE) -> None:
        super().__init__()
        self._work, self._version_dir, self._namespace = work, version_dir, namespace

    def expand(self, edges: beam.PCollection) -> beam.PCollection:
        canonical = edges | "Orient" >> beam.Map(_oriented_edge) | "Distinct" >> beam.Distinct()
        _ = (
            canonical
            | "Rows" >> beam.Map(_edge_row)
            | "WriteInput" >> WriteScratch(edges_dir(self._work, 0), EDGES)
        )
        loops_dropped = canonical | "DropLoops" >> beam.Filter(lambda e: e[0] != e[1])
        return loops_dropped | "Round00" >> _RoundOutputs(self._work, self._version_dir, 0, self._namespace)


def build_round(
    pipeline: beam.Pipeline, work: str, version_dir: str, k: int, namespace: str = NAMESPACE
) -> None:
    """The pipeline of round ``k >= 1``: ``edges-k`` -> ``edges-(k+1)`` and the statistic ``cc_round_kk``."""
    _ = (
        pipeline
        | "ReadEdges" >> ReadScratch(edges_dir(work, k))
        | "Edges" >> beam.Map(_row_edge)
        | f"Round{k:02d}" >> _RoundOutputs(work, version_dir, k, namespace)
    )


def iterate_components(
    run: Callable[[Callable[[beam.Pipeline], None]], Any],
    version: storage.StageVersion,
    work: str,
    max_rounds: int,
    *,
    namespace: str = NAMESPACE,
    on_unconverged: str = "raise",
) -> list[int]:
    """Run rounds 1, 2, ... (``run(build)`` runs one pipeline) after :class:`StartComponents` until a
    round changes nothing; returns the changed-edge count of every round run, round 0 first.

    The labels then come from ``edges-<len(result)>`` (:class:`ComponentLabels`). When round
    ``max_rounds - 1`` still changed edges: ``on_unconverged="raise"`` raises
    ``ComponentsNotConverged``, ``"count"`` returns the counts (``rounds_needed`` reports it).
    """
    if on_unconverged not in ("raise", "count"):
        raise ValueError("on_unconverged must be 'raise' or 'count'")
    version_dir = str(version.path)
    history = [int(read_stat(version, round_stat(0), 0))]
    while history[-1] and len(history) < max_rounds:
        k = len(history)

        def build(pipeline: beam.Pipeline, k: int = k) -> None:
            build_round(pipeline, work, version_dir, k, namespace)

        run(build)
        history.append(int(read_stat(version, round_stat(k), 0)))
    if history[-1] and on_unconverged == "raise":
        raise ComponentsNotConverged(_not_converged(max_rounds, history[-1]))
    return history


def _labels(edge: tuple[str, str]):
    hi, lo = edge
    return (hi, lo), (lo, lo)


def _self_labels(edge: tuple[str, str]):
    u, v = edge
    return (u, u), (v, v)


class ComponentLabels(beam.PTransform):
    """``(node, smallest node id of its component)`` for every endpoint of the input edges, from the
    last round's output ``edges-<rounds>`` (a star around each component's minimum) and ``edges-00``."""

    def __init__(self, work: str, rounds: int) -> None:
        super().__init__()
        self._work, self._rounds = work, rounds

    def expand(self, pbegin: beam.pvalue.PBegin) -> beam.PCollection:
        final = (
            pbegin
            | "ReadFinal" >> ReadScratch(edges_dir(self._work, self._rounds))
            | "Final" >> beam.Map(_row_edge)
            | "Labels" >> beam.FlatMap(_labels)
        )
        nodes = (
            pbegin
            | "ReadInput" >> ReadScratch(edges_dir(self._work, 0))
            | "Input" >> beam.Map(_row_edge)
            | "Nodes" >> beam.FlatMap(_self_labels)
        )
        return (final, nodes) | "AllLabels" >> beam.Flatten() | "MinLabel" >> beam.CombinePerKey(min)
