"""The layers of docs/architecture.md hold: pure modules pull in no Beam, Dagster, Parquet or storage,
and nothing under pipelines/ or training/ imports Dagster (training/ may use dagster_pipes)."""

from __future__ import annotations

import ast
import json
import subprocess
import sys

from tests.conftest import REPO

# Beam / job modules of the packages whose other modules must be pure.
# the Beam job modules, and the dedup job's file tasks (steps, spill: I/O, no Beam)
BEAM_LAYER = {"job", "report", "steps", "spill"}
PURE_PACKAGES = ("pipelines/text", "pipelines/dedup", "pipelines/bias", "pipelines/cleaning")
PURE_EXTRA = ("pipelines.hashing", "pipelines.tokens.splits", "pipelines.tokens.packing")
FORBIDDEN = ("apache_beam", "dagster", "pyarrow.parquet", "pipelines.storage")


def pure_modules() -> list[str]:
    """Every module of ``PURE_PACKAGES`` except ``job``, ``report`` and ``beam_*``, plus ``PURE_EXTRA``."""
    out = []
    for package in PURE_PACKAGES:
        for path in sorted((REPO / package).glob("*.py")):
            if path.stem in BEAM_LAYER or path.stem.startswith("beam_") or path.stem == "__init__":
                continue
            out.append(f"{package.replace('/', '.')}.{path.stem}")
    return [*out, *PURE_EXTRA]


_PROBE = """
import importlib, json, sys
forbidden = {forbidden!r}
found = {{}}
for name in {modules!r}:
    before = set(sys.modules)
    importlib.import_module(name)
    new = set(sys.modules) - before
    hits = sorted(f for f in forbidden if any(m == f or m.startswith(f + ".") for m in new))
    if hits:
        found[name] = hits
print(json.dumps(found))
"""


def test_pure_modules_import_no_beam_dagster_parquet_or_storage():
    modules = pure_modules()
    assert "pipelines.dedup.near" in modules and "pipelines.dedup.job" not in modules
    probe = _PROBE.format(forbidden=FORBIDDEN, modules=modules)
    proc = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode == 0, proc.stderr
    pulled = json.loads(proc.stdout.strip().splitlines()[-1])
    assert pulled == {}, f"pure modules pull in forbidden modules (first importer shown): {pulled}"


def _imported_roots(path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


def test_pipelines_and_training_never_import_dagster():
    allowed = {"pipelines": set(), "training": {"dagster_pipes"}}
    offenders = []
    for package, ok in allowed.items():
        for path in sorted((REPO / package).rglob("*.py")):
            bad = {r for r in _imported_roots(path) if r.startswith("dagster") and r not in ok}
            if bad:
                offenders.append(f"{path.relative_to(REPO)}: {sorted(bad)}")
    assert offenders == []
