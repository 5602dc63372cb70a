"""The stage graph is declared once (assets/graph.py) and everything else follows from it."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from assets import graph
from pipelines import storage

REPO = Path(__file__).resolve().parent.parent
STORAGE_CALLS = {
    "current_version",
    "new_version",
    "transaction",
    "find_reusable",
    "stage_root",
    "StageVersion",
}


def test_upstreams_are_declared_before_their_stage():
    seen: set[str] = set()
    for s in graph.STAGES:
        assert set(s.upstream) <= seen, f"{s.name} reads {set(s.upstream) - seen} declared later"
        assert s.group in graph.GROUPS
        assert callable(s.run_function())
        seen.add(s.name)


def test_assets_checks_and_jobs_follow_the_table():
    from assets.definitions import defs
    from assets.stage_assets import ASSET_CHECKS, ASSETS

    assert [a.key.to_user_string() for a in ASSETS] == list(graph.NAMES)
    for asset, spec in zip(ASSETS, graph.STAGES, strict=True):
        deps = {k.to_user_string() for k in asset.asset_deps[asset.key]}
        assert deps == set(spec.upstream)
        assert asset.group_names_by_key[asset.key] == spec.group
    declared = {(s.name, c) for s in graph.STAGES for c in s.checks}
    built = {(k.asset_key.to_user_string(), k.name) for c in ASSET_CHECKS for k in c.check_keys}
    assert built == declared
    data_job = defs.resolve_job_def("corpusforge_data")
    in_job = {k.to_user_string() for k in data_job.asset_layer.executable_asset_keys}
    assert in_job == set(graph.DATA_STAGES)


def test_docs_embed_the_generated_graph():
    block = graph.mermaid()
    for doc in ("README.md", "docs/architecture.md"):
        assert block in (REPO / doc).read_text(), f"{doc}: paste assets.graph.mermaid() output"


def test_bias_report_lineage_comes_from_the_table():
    params = graph.stage("bias_report").job_params()
    assert params["lineage"] == (
        ("filtered", "dedup", True),
        ("dedup", "clean", True),
        ("clean", "raw", True),
        ("raw", None, False),
    )
    assert params["representation"] == (("before", "dedup"), ("after", "filtered"))


def test_unknown_stage_names_the_choices():
    with pytest.raises(KeyError, match="stages: raw, clean"):
        graph.stage("filtered_documents")


def _py_files(*roots: str) -> list[Path]:
    return [p for root in roots for p in sorted((REPO / root).rglob("*.py"))]


def test_pipelines_and_training_never_name_a_stage():
    """Stage jobs get their name and upstreams from the StageJob: no literal stage names in storage
    calls, and no STAGE / UPSTREAM constants."""
    problems = []
    for path in _py_files("pipelines", "training"):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Assign):
                for target in node.targets:
                    if isinstance(target, ast.Name) and (
                        target.id in ("STAGE", "UPSTREAM", "UPSTREAM_ASSET") or target.id.endswith("_STAGE")
                    ):
                        problems.append(f"{path.name}:{node.lineno} defines {target.id}")
            if isinstance(node, ast.Call):
                func = node.func
                name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
                if name not in STORAGE_CALLS:
                    continue
                args = [*node.args, *(k.value for k in node.keywords)]
                for arg in args:
                    if isinstance(arg, ast.Constant) and arg.value in graph.NAMES:
                        problems.append(f"{path.name}:{node.lineno} {name}(... {arg.value!r} ...)")
    assert not problems, "\n".join(problems)


# --------------------------------------------------------------------------------------------------
# the version transaction


def test_transaction_commits_once_and_points_current(tmp_path):
    with storage.transaction(tmp_path, "s", "fp1") as tx:
        (tx.version.path / "x").write_text("1")
        tx.commit(config={}, upstream={})
        with pytest.raises(RuntimeError, match="already committed"):
            tx.commit(config={}, upstream={})
    assert storage.current_version(tmp_path, "s").name == tx.version.name


def test_transaction_discards_on_error_and_keeps_the_previous_version(tmp_path):
    with storage.transaction(tmp_path, "s", "fp1") as tx:
        tx.commit(config={}, upstream={})
    first = tx.version.name
    with pytest.raises(ValueError), storage.transaction(tmp_path, "s", "fp2") as tx2:
        (tx2.version.path / "partial").write_text("x")
        raise ValueError("boom")
    assert not tx2.version.path.exists()
    assert storage.current_version(tmp_path, "s").name == first


def test_transaction_without_commit_is_an_error_and_leaves_nothing(tmp_path):
    with (
        pytest.raises(RuntimeError, match="without committing"),
        storage.transaction(tmp_path, "s", "fp") as tx,
    ):
        tx.version.path.joinpath("x").write_text("x")
    assert not list((tmp_path / "s").glob("v-*"))


def test_transaction_reuse_returns_the_committed_version_and_writes_nothing(tmp_path):
    with storage.transaction(tmp_path, "s", "fp") as tx:
        tx.commit(config={}, upstream={})
    with storage.transaction(tmp_path, "s", "fp", reuse=True) as again:
        assert again.reused is not None and again.reused.name == tx.version.name
        with pytest.raises(RuntimeError, match="re-uses"):
            _ = again.version
    assert len(list((tmp_path / "s").glob("v-*"))) == 1


def test_only_storage_creates_commits_or_discards_versions():
    """Every stage goes through storage.transaction: nobody else calls the low-level functions."""
    low_level = {"new_version", "commit", "discard", "point_current"}
    problems = []
    for path in _py_files("pipelines", "training", "assets"):
        if path.name == "storage.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and isinstance(node.func.value, ast.Name)
                and node.func.value.id == "storage"
                and node.func.attr in low_level
            ):
                problems.append(f"{path.relative_to(REPO)}:{node.lineno} storage.{node.func.attr}")
    assert not problems, "\n".join(problems)
