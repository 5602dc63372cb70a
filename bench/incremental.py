"""Incremental runs and resume, measured as whole processes (issue: incremental runs).

Three measurements on one corpus built by ``bench/make_text_corpus.py`` (``--mb`` MB in ``--files``
files; the last ``--batch-files`` files are the new batch, ~5 % by default):

* ``full``: the data job (every stage up to ``tokens``, ``assets.graph.DATA_STAGES``) over the whole
  corpus from scratch (``output.incremental: false``), in a fresh data directory.
* ``incremental``: the same stages over the corpus without the batch, then (measured) again after
  the batch files are added: ``raw`` ingests the batch, the split stages carry what did not change.
  The kept documents and the removals by reason are compared with ``full``.
* ``resume``: ``clean`` is killed (process group, ``SIGKILL``) once about half its splits have a
  completion record, then re-run (measured) and compared with ``clean``'s time in ``full``.

Each measured run is one subprocess (start-up included); wall time and peak RSS / PSS of its whole
process tree are recorded. One JSON line per measurement on stdout (and ``--out``).

Usage: ``python bench/incremental.py --work /tmp/incbench --mb 200``
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from clean_throughput import TreeMemorySampler, machine_facts  # noqa: E402

STAGES = ("raw", "clean", "dedup", "filtered")  # compared document by document

CHILD = """
import json, sys, time
sys.path.insert(0, {repo!r})
from assets.graph import run_stage
from pipelines.beam_stage import pipeline_options
from pipelines.config import load_config
cfg = load_config(overrides={overrides!r})
options = pipeline_options(cfg.runner)
times = {{}}
for name in {stages!r}:
    start = time.perf_counter()
    result = run_stage(name, cfg, options, log=lambda m: None)
    work = result.manifest.get("resume") or {{}}
    times[name] = {{"s": round(time.perf_counter() - start, 2), "processed": work.get("processed"),
                   "carried": work.get("carried"), "done_before": work.get("done_before")}}
print("TIMES " + json.dumps(times), flush=True)
"""


WARM = {"warm_workers": True}  # --cold-workers: Beam's fresh interpreter per worker


def _overrides(corpus: Path, data: Path, incremental: bool, workers: int) -> dict[str, Any]:
    return {
        "paths": {"input": str(corpus), "data_dir": str(data)},
        "output": {"incremental": incremental},
        "runner": {"direct_running_mode": "multi_processing", "direct_num_workers": workers, **WARM},
    }


def run_child(overrides: dict[str, Any], stages: tuple[str, ...], kill_when: Any = None) -> dict[str, Any]:
    """Run the stages in one subprocess; measure wall time and the process tree's peak memory.
    ``kill_when()`` true: kill the whole process group (the result then has ``killed``)."""
    code = CHILD.format(repo=str(REPO), overrides=overrides, stages=stages)
    killed = False
    # files, not pipes: a pipe nobody reads while polling fills up and blocks the child's logging
    with tempfile.TemporaryFile() as out_fh, tempfile.TemporaryFile() as err_fh:
        start = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, "-c", code], stdout=out_fh, stderr=err_fh, start_new_session=True
        )
        with TreeMemorySampler(proc.pid, interval=0.25) as sampler:
            while proc.poll() is None:
                if kill_when is not None and kill_when():
                    os.killpg(proc.pid, signal.SIGKILL)
                    killed = True
                    break
                time.sleep(0.05)
            proc.wait()
        wall = time.perf_counter() - start
        out_fh.seek(0)
        err_fh.seek(0)
        out, err = out_fh.read(), err_fh.read()
    record: dict[str, Any] = {"wall_s": round(wall, 2), "stderr_bytes": len(err), **sampler.report()}
    if killed:
        return {**record, "killed": True}
    if proc.returncode != 0:
        raise SystemExit(f"stage run failed ({proc.returncode}):\n{err.decode()[-4000:]}")
    line = next(ln for ln in out.decode().splitlines() if ln.startswith("TIMES "))
    return {**record, "stages": json.loads(line[len("TIMES ") :])}


def kept_and_removed(data: Path) -> dict[str, Any]:
    from pipelines import storage

    out: dict[str, Any] = {}
    for name in STAGES:
        version = storage.current_version(data, name)
        kept = {r["id"] for r in storage.iter_stage_rows(version, columns=["id"])}
        removed: dict[str, set[str]] = {}
        for r in storage.iter_stage_rows(version, "ledger", columns=["doc_id", "reason"]):
            removed.setdefault(r["reason"], set()).add(r["doc_id"])
        out[name] = {"kept": kept, "removed": removed}
    return out


def compare(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """Per stage: kept documents and removals by reason that differ between two data directories."""
    diff: dict[str, Any] = {}
    for name in STAGES:
        reasons = set(a[name]["removed"]) | set(b[name]["removed"])
        diff[name] = {
            "kept": len(a[name]["kept"]),
            "kept_only_one_side": len(a[name]["kept"] ^ b[name]["kept"]),
            "removed_differ": {
                r: len(a[name]["removed"].get(r, set()) ^ b[name]["removed"].get(r, set()))
                for r in sorted(reasons)
            },
        }
    return diff


def survivor_rule_differences(inc: Path, full: Path, batch: set[str]) -> dict[str, Any]:
    """Dedup survivors that differ between the incremental run and the rebuild, and how many of them
    lie in a (rebuild) cluster that mixes batch documents with older ones: the survivor rule's doing."""
    from pipelines import storage

    def kept(data: Path) -> set[str]:
        return {
            r["id"] for r in storage.iter_stage_rows(storage.current_version(data, "dedup"), columns=["id"])
        }

    version = storage.current_version(full, "dedup")
    cluster = {
        r["doc_id"]: r["cluster_id"]
        for r in storage.iter_stage_rows(version, "clusters", ["doc_id", "cluster_id"])
    }
    members: dict[str, list[str]] = {}
    for doc, cid in cluster.items():
        members.setdefault(cid, []).append(doc)
    raw = storage.current_version(full, "raw")
    in_batch = {r["id"]: r["source"] in batch for r in storage.iter_stage_rows(raw, columns=["id", "source"])}
    differ = kept(inc) ^ kept(full)
    mixed = sum(1 for d in differ if len({in_batch[m] for m in members[cluster[d]]}) == 2)
    removed: dict[str, list[int]] = {}
    for side, data in enumerate((inc, full)):
        stats = storage.current_version(data, "dedup").manifest()["stats"]["removed_by_reason"]
        for reason, n in stats.items():
            removed.setdefault(reason, [0, 0])[side] = n
    return {"survivors_differ": len(differ), "in_mixed_clusters": mixed, "removed_inc_vs_full": removed}


def emit(record: dict[str, Any], out: Path | None) -> None:
    line = json.dumps(record, sort_keys=True)
    print(line, flush=True)
    if out is not None:
        with out.open("a") as fh:
            fh.write(line + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", type=Path, default=Path("/tmp/incbench"))
    ap.add_argument("--mb", type=int, default=200)
    ap.add_argument("--files", type=int, default=40)
    ap.add_argument("--batch-files", type=int, default=2)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--out", type=Path)
    ap.add_argument("--skip-resume", action="store_true", help="measure full and incremental runs only")
    ap.add_argument("--cold-workers", action="store_true", help="runner.warm_workers: false")
    args = ap.parse_args()
    WARM["warm_workers"] = not args.cold_workers

    source = args.work / "source"
    if not (source / "corpus.json").exists():
        cmd = [sys.executable, str(REPO / "bench/make_text_corpus.py"), "--out", str(source)]
        subprocess.run([*cmd, "--mb", str(args.mb), "--files", str(args.files)], check=True)
    files = sorted(source.glob("*.jsonl"))
    batch = files[-args.batch_files :]
    batch_bytes = sum(f.stat().st_size for f in batch)
    total_bytes = sum(f.stat().st_size for f in files)
    base = {
        "bench": "incremental",
        "corpus_mb": args.mb,
        "files": len(files),
        "warm_workers": WARM["warm_workers"],
        "machine": machine_facts(),
    }

    corpus = args.work / "corpus"  # the whole corpus: the full rebuild's input
    shutil.rmtree(args.work / "data-full", ignore_errors=True)
    if not corpus.exists():
        corpus.mkdir()
        for f in files:
            os.link(f, corpus / f.name)
    from assets.graph import DATA_STAGES

    full = run_child(_overrides(corpus, args.work / "data-full", False, args.workers), DATA_STAGES)
    emit({**base, "mode": "full", **full}, args.out)

    grown = args.work / "grown"  # starts without the batch, then gains it
    shutil.rmtree(grown, ignore_errors=True)
    shutil.rmtree(args.work / "data-inc", ignore_errors=True)
    grown.mkdir()
    for f in files:
        if f not in batch:
            os.link(f, grown / f.name)
    first = run_child(_overrides(grown, args.work / "data-inc", True, args.workers), DATA_STAGES)
    emit({**base, "mode": "incremental-first", **first}, args.out)
    for f in batch:
        os.link(f, grown / f.name)
    inc = run_child(_overrides(grown, args.work / "data-inc", True, args.workers), DATA_STAGES)
    diff = compare(kept_and_removed(args.work / "data-inc"), kept_and_removed(args.work / "data-full"))
    rule = survivor_rule_differences(args.work / "data-inc", args.work / "data-full", {f.name for f in batch})
    emit(
        {
            **base,
            "mode": "incremental-batch",
            "batch_fraction": round(batch_bytes / total_bytes, 4),
            "wall_vs_full": round(inc["wall_s"] / full["wall_s"], 3),
            "peak_rss_vs_full": round(inc["tree_peak_rss_mb"] / full["tree_peak_rss_mb"], 3),
            "vs_full": diff,
            "survivor_rule": rule,
            **inc,
        },
        args.out,
    )

    if args.skip_resume:
        return
    # resume: kill clean at ~half its splits, re-run it
    data = args.work / "data-resume"
    shutil.rmtree(data, ignore_errors=True)
    shutil.copytree(args.work / "data-full" / "raw", data / "raw")
    overrides = _overrides(corpus, data, False, args.workers)
    splits = len(
        json.loads(
            (data / "raw" / (data / "raw" / "CURRENT").read_text().strip() / "splits.json").read_text()
        )
    )

    def half_done() -> bool:
        return sum(1 for _ in (data / "clean").glob("v-*/_done/*.json")) >= splits // 2

    killed = run_child(overrides, ("clean",), kill_when=half_done)
    done = sum(1 for _ in (data / "clean").glob("v-*/_done/*.json"))
    resumed = run_child(overrides, ("clean",))
    clean_full = full["stages"]["clean"]["s"]
    emit(
        {
            **base,
            "mode": "resume-clean",
            "killed_after_s": killed["wall_s"],
            "splits": splits,
            "done_at_kill": done,
            "clean_full_s": clean_full,
            "resume_vs_full": round(resumed["stages"]["clean"]["s"] / clean_full, 3),
            **resumed,
        },
        args.out,
    )


if __name__ == "__main__":
    main()
