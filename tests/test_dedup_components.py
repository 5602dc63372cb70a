"""Connected components: Beam large-star/small-star rounds vs the single-node union-find."""

import random
import tempfile
from pathlib import Path

import apache_beam as beam
import pytest
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from pipelines import beam_scratch, storage
from pipelines.beam_stage import WriteStat, read_stat
from pipelines.dedup.beam_components import (
    NAMESPACE,
    ComponentLabels,
    ConnectedComponents,
    StartComponents,
    iterate_components,
)
from pipelines.dedup.components import (
    ComponentsNotConverged,
    rounds_needed,
    star_components,
    union_find_components,
)


def _pipeline():
    return TestPipeline(options=PipelineOptions(["--runner=FnApiRunner"]))


def _run(edges, max_rounds, expected=None, on_unconverged="raise", edges_per_round=None):
    """Run the transform; ``(rounds needed, converged)`` from its rounds output (data, not metrics)."""
    with tempfile.TemporaryDirectory() as tmp:
        version = storage.StageVersion(Path(tmp), "v")
        p = _pipeline()
        labels, rounds = (
            p
            | beam.Create(edges)
            | ConnectedComponents(max_rounds, on_unconverged=on_unconverged, with_rounds=True)
        )
        if expected is not None:
            assert_that(labels, equal_to(sorted(expected.items())))
        _ = rounds | WriteStat(version.path, "cc_rounds")
        result = p.run()
        result.wait_until_finish()
        if edges_per_round is not None:  # the round_NN_edges counters only monitor the early stop
            counters = result.metrics().query(MetricsFilter().with_namespace(NAMESPACE))["counters"]
            for c in counters:
                if c.key.metric.name.endswith("_edges"):
                    edges_per_round[int(c.key.metric.name.split("_")[1])] = c.committed
        changed = read_stat(version, "cc_rounds")
    assert len(changed) == max_rounds
    return rounds_needed(changed)


def _random_graph(rng, prefix, n_nodes, n_edges):
    nodes = [f"{prefix}{rng.getrandbits(32):08x}" for _ in range(n_nodes)]
    return [(rng.choice(nodes), rng.choice(nodes)) for _ in range(n_edges)]


# -- pure ---------------------------------------------------------------------------------------


def test_union_find_chain_is_one_component_labelled_by_minimum():
    labels = union_find_components([("b", "c"), ("c", "a"), ("x", "y")])
    assert labels == {"a": "a", "b": "a", "c": "a", "x": "x", "y": "x"}


def test_star_rounds_equal_union_find_on_random_graphs():
    rng = random.Random(3)
    for i in range(150):
        edges = _random_graph(rng, f"g{i}-", rng.randint(2, 120), rng.randint(0, 150))
        labels, history = star_components(edges)
        assert labels == union_find_components(edges)
        assert history == [] or history[-1] == 0


def test_rounds_needed_reads_the_first_round_without_changes():
    assert rounds_needed([5, 2, 0, 0]) == (2, True)
    assert rounds_needed([0, 0]) == (0, True)
    assert rounds_needed([3, 1]) == (2, False)
    assert rounds_needed([]) == (0, True)  # no components were computed


def test_star_rounds_on_a_long_path_need_several_rounds():
    ids = [f"n{i:03d}" for i in range(200)]
    labels, history = star_components([(ids[i], ids[i + 1]) for i in range(199)])
    assert set(labels.values()) == {"n000"}
    assert len(history) > 3 and history[-1] == 0 and all(h > 0 for h in history[:-1])


# -- Beam ---------------------------------------------------------------------------------------


def test_beam_chain_star_and_several_components():
    edges = [
        ("A", "B"),
        ("B", "C"),  # chain: A and C end up together although they share no edge
        ("m", "z"),
        ("m", "b"),
        ("m", "q"),
        ("q", "m"),  # star around "m" whose minimum is the leaf "b"; duplicate reversed edge
        ("solo", "solo"),  # self-loop: a singleton
        ("x1", "x2"),
        ("x2", "x1"),
    ]
    expected = {
        "A": "A",
        "B": "A",
        "C": "A",
        "b": "b",
        "m": "b",
        "q": "b",
        "z": "b",
        "solo": "solo",
        "x1": "x1",
        "x2": "x1",
    }
    rounds, converged = _run(edges, 4, expected)
    assert converged and 1 <= rounds < 4


def test_beam_long_path_counts_rounds_like_the_pure_run():
    rng = random.Random(11)
    ids = [f"p{rng.getrandbits(40):010x}" for _ in range(200)]
    edges = [(ids[i], ids[i + 1]) for i in range(199)]
    labels, history = star_components(edges)
    rounds, converged = _run(edges, len(history) + 1, union_find_components(edges))
    assert converged
    assert rounds == len(history) - 1 and rounds > 3


def test_beam_rounds_after_convergence_get_no_edges():
    ids = [f"n{i:03d}" for i in range(64)]
    edges = [(ids[i], ids[i + 1]) for i in range(63)]
    needed = len(star_components(edges)[1])  # the last of these changes nothing
    per_round: dict[int, int] = {}
    rounds, converged = _run(edges, needed + 4, union_find_components(edges), edges_per_round=per_round)
    assert converged and rounds == needed - 1
    assert all(per_round.get(i, 0) > 0 for i in range(needed))
    assert all(per_round.get(i, 0) == 0 for i in range(needed, needed + 4))


def test_beam_random_graphs_equal_union_find():
    rng = random.Random(5)
    edges = []
    for g in range(25):
        edges += _random_graph(rng, f"r{g}-", rng.randint(2, 60), rng.randint(1, 70))
    needed = len(star_components(edges)[1])
    assert _run(edges, needed + 1, union_find_components(edges)) == (needed - 1, True)


def test_beam_raises_when_last_round_still_changes():
    ids = [f"n{i:03d}" for i in range(64)]
    edges = [(ids[i], ids[i + 1]) for i in range(63)]
    with pytest.raises(Exception, match="did not converge in 2 rounds"):
        _run(edges, 2)


def test_beam_count_mode_flags_instead_of_failing():
    ids = [f"n{i:03d}" for i in range(64)]
    edges = [(ids[i], ids[i + 1]) for i in range(63)]
    assert _run(edges, 2, on_unconverged="count") == (2, False)
    assert issubclass(ComponentsNotConverged, RuntimeError)


# -- the driver loop of the dedup job: one pipeline per round, files between rounds ----------------


def _in_memory_run(build):
    p = beam.Pipeline(options=PipelineOptions(["--runner=FnApiRunner", "--direct_running_mode=in_memory"]))
    build(p)
    p.run().wait_until_finish()


def _loop(edges, max_rounds, expected=None, on_unconverged="raise"):
    """Round 0 in the pipeline that has the edges, then ``iterate_components``; the changed-edge
    count of every round run, and the labels checked against ``expected``."""
    with tempfile.TemporaryDirectory() as tmp:
        version = storage.StageVersion(Path(tmp), "v")
        version.path.mkdir()
        work = str(version.path / "_scratch")
        beam_scratch.create(work)
        _in_memory_run(lambda p: p | beam.Create(edges) | StartComponents(work, str(version.path)))
        history = iterate_components(_in_memory_run, version, work, max_rounds, on_unconverged=on_unconverged)
        if expected is not None:

            def labels(p):
                assert_that(p | ComponentLabels(work, len(history)), equal_to(sorted(expected.items())))

            _in_memory_run(labels)
        rounds = sorted(f.name for f in Path(work).iterdir())
    # one pipeline per round, each writing the next round's edges (an empty table writes no file)
    assert rounds == ([f"edges-{k:02d}" for k in range(len(history) + 1)] if edges else [])
    return history


def test_loop_stops_after_the_first_round_without_changes_like_the_pure_rounds():
    rng = random.Random(11)
    ids = [f"p{rng.getrandbits(40):010x}" for _ in range(200)]
    edges = [(ids[i], ids[i + 1]) for i in range(199)]
    labels, history = star_components(edges)
    assert _loop(edges, 30, union_find_components(edges)) == history
    assert rounds_needed(history) == (len(history) - 1, True) and len(history) > 4


def test_loop_random_graphs_self_loops_and_duplicates_equal_union_find():
    rng = random.Random(5)
    edges = [("solo", "solo"), ("x1", "x2"), ("x2", "x1")]
    for g in range(25):
        edges += _random_graph(rng, f"r{g}-", rng.randint(2, 60), rng.randint(1, 70))
    history = _loop(edges, 30, union_find_components(edges))
    assert history == star_components(edges)[1]


def test_loop_without_edges_runs_round_zero_only():
    assert _loop([], 5, {}) == [0]


def test_loop_raises_or_counts_when_the_last_round_still_changes():
    ids = [f"n{i:03d}" for i in range(64)]
    edges = [(ids[i], ids[i + 1]) for i in range(63)]
    with pytest.raises(ComponentsNotConverged, match="did not converge in 2 rounds"):
        _loop(edges, 2)
    history = _loop(edges, 2, on_unconverged="count")
    assert len(history) == 2 and rounds_needed(history) == (2, False)
