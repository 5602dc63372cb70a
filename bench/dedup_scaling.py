"""Dedup scaling curve: our dedup stage vs text-dedup vs datatrove (defaults) on growing corpora.

For every size of ``--mb`` (10^6 bytes of document text) the driver builds an unlabelled corpus with
``bench/make_text_corpus.py`` (English + Chinese; copy 0 of every source document as is, later copies
with shuffled paragraphs, so most of a large corpus is near-duplicate) under ``--work/mb<N>/corpus``
and, outside the timed runs, each tool's input in its own format under ``--work/mb<N>/<tool>``:

* ``ours``: a committed ``clean`` stage of ``--shards`` Parquet shards in ``ours/data`` (the clean
  stage's output written directly, no cleaning: ``dedup_speed.commit_clean_stage``, streamed);
* ``text-dedup``: the corpus as a ``datasets.Dataset.save_to_disk`` folder (``dedup_speed.
  write_td_dataset``, run with the text-dedup venv's python ``--td-python``);
* ``datatrove-default``: the corpus's JSONL files themselves (one datatrove task per file).

Then each tool runs in a fresh subprocess, one after the other, measured from outside
(``dedup_speed.measure_process``): ``ours`` is this file with ``--run-ours`` (``assets.graph.
run_stage("dedup", cfg, options)`` with ``dedup_speed.ours_stage_args``: default ``DedupConfig``,
FnApiRunner multi_processing with ``--workers``), ``text-dedup`` is its MinHash CLI with its defaults
and ``--num_proc --workers`` but without ``--debug`` (no union-find dump: the rows it kept are in its
log; ``dedup_speed.td_command``), ``datatrove-default`` is
``bench/dedup_datatrove.py --input eng=corpus`` with the datatrove venv's python (``--dt-python``).
Every tool's ``TMPDIR`` (and text-dedup's Hugging Face caches) points into its work folder, so its
scratch space is measured with its output.

ONE JSON line per (tool, size): ``wall_s`` (the whole process: interpreter start, imports, the work,
its own bookkeeping), ``tool_wall_s`` (the tool's own figure for the work, when it reports one),
``docs``, ``docs_per_s``, ``mb_per_s`` (from ``wall_s``), peak RSS summed over the process tree and
peak PSS (``clean_throughput.TreeMemorySampler``, /proc every 0.5 s: RSS counts pages that forked
workers share with their parent once per process, PSS splits them), CPU seconds, disk (``disk_input_mb``:
the tool folder before the run, i.e. its input format; ``disk_mb``: what the run added, output + scratch
left; ``disk_peak_mb``: the most it had added at any time, sampled every ``--disk-interval`` s), and
``removed`` / ``removed_fraction`` (documents not kept; for text-dedup this includes the rows it drops
as too short, reported as ``short_rows_dropped``). A run past ``--timeout`` seconds is killed with
its process group and reported as ``"status": "timeout"``, a failing one as ``"failed"`` with the tail of
its log in ``error_tail``; a size without enough free disk (``--disk-factor`` x its text size) is
``"skipped"``. Each tool's folder is deleted after its run and each size's folder after its last tool,
unless ``--keep``.

Usage::

    .venv/bin/python bench/dedup_scaling.py --work /tmp/dedupscale --mb 50,200,1000 \
        --tools ours,text-dedup,datatrove-default --timeout 7200 --wait-load 1.5 --out scaling.jsonl
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(BENCH))  # bench/ is not a package

import dedup_speed  # noqa: E402
import make_text_corpus  # noqa: E402
from clean_throughput import log, machine_facts  # noqa: E402

TOOLS = ("ours", "text-dedup", "datatrove-default")
MB = 1e6


# ------------------------------------------------------------------------------------------- disk


def du_bytes(path: Path) -> int:
    """Bytes allocated under ``path`` (like ``du -s``; files that vanish while walking are skipped)."""
    total = 0
    for root, dirs, files in os.walk(path, onerror=lambda _: None):
        for name in dirs + files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(root, name)).st_blocks * 512
    return total


class DiskPeak:
    """Background thread that records the largest ``du_bytes(path)`` seen every ``interval`` seconds."""

    def __init__(self, path: Path, interval: float = 2.0) -> None:
        self.path = path
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak = max(self.peak, du_bytes(self.path))

    def __enter__(self) -> DiskPeak:
        self.peak = du_bytes(self.path)
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, du_bytes(self.path))


def df_line(path: Path) -> str:
    proc = subprocess.run(["df", "-h", str(path)], capture_output=True, text=True, check=False)
    return proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else "df failed"


# ---------------------------------------------------------------------------------------- inputs


def corpus_files(corpus: Path) -> list[Path]:
    return sorted(corpus.glob("part-*.jsonl"))


def iter_corpus(corpus: Path, seed: int = 0) -> Iterator[dict[str, Any]]:
    """The corpus's records, file by file, each with a deterministic ``quality`` score."""
    rng = random.Random(seed)
    for path in corpus_files(corpus):
        with path.open(encoding="utf-8") as fh:
            for line in fh:
                r = json.loads(line)
                yield {"id": r["id"], "text": r["text"], "lang": r["lang"], "quality": round(rng.random(), 4)}


def prepare_tool(tool: str, tool_dir: Path, corpus: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Write ``tool``'s input under ``tool_dir`` (outside the timed run); returns facts about it."""
    tool_dir.mkdir(parents=True, exist_ok=True)
    if tool == "ours":
        version = dedup_speed.commit_clean_stage(tool_dir / "data", iter_corpus(corpus), args.shards)
        return {"clean_version": version}
    if tool == "text-dedup":
        return dedup_speed.write_td_dataset(corpus_files(corpus), tool_dir / "hf", args.td_python)
    if tool == "datatrove-default":
        if not Path(args.dt_python).is_file():
            raise RuntimeError(f"datatrove venv python not found at {args.dt_python}")
        return {}
    raise ValueError(f"unknown tool {tool!r}")


def tool_command(
    tool: str, tool_dir: Path, corpus: Path, args: argparse.Namespace
) -> tuple[list[str], dict[str, str]]:
    """The timed command of ``tool`` and its environment (``TMPDIR`` inside ``tool_dir``)."""
    env = {**os.environ, "TMPDIR": str(tool_dir / "tmp")}
    (tool_dir / "tmp").mkdir(parents=True, exist_ok=True)
    workers = str(args.workers)
    if tool == "ours":
        cmd = [sys.executable, str(Path(__file__).resolve()), "--run-ours", str(tool_dir / "data")]
        return [*cmd, "--workers", workers], env
    if tool == "text-dedup":
        dataset, output = tool_dir / "hf" / "dataset", tool_dir / "output"
        cmd = dedup_speed.td_command(args.td_python, dataset, output, args.workers, debug=False)
        return cmd, dedup_speed.td_env(tool_dir)
    if tool == "datatrove-default":
        return [
            args.dt_python,
            str(BENCH / "dedup_datatrove.py"),
            "--workers",
            workers,
            "--pred",
            str(tool_dir / "pred.jsonl"),
            "--label",
            tool,
            "--out",
            str(tool_dir / "out"),
            "--input",
            f"eng={corpus}",
        ], env
    raise ValueError(f"unknown tool {tool!r}")


# ------------------------------------------------------------------------------------------ tools


def run_ours_stage(data_dir: Path, workers: int) -> dict[str, Any]:
    """The subprocess of ``ours``: our dedup stage on the committed clean stage in ``data_dir``."""
    from assets.graph import run_stage

    cfg, options = dedup_speed.ours_stage_args(data_dir, workers)
    t0 = time.perf_counter()
    result = run_stage("dedup", cfg, options)
    wall = time.perf_counter() - t0
    stats = result.manifest.get("stats", {})
    return {
        "tool": "ours",
        "wall_s": round(wall, 2),
        "documents_in": stats.get("documents_in"),
        "removed": stats.get("removed"),
        "chains": stats.get("chains"),
        "config": {"dedup": "DedupConfig defaults", **result.manifest.get("lsh", {}), "workers": workers},
    }


def _last_json(stdout: str) -> dict[str, Any]:
    for line in reversed(stdout.strip().splitlines()):
        if line.startswith("{"):
            try:
                return json.loads(line)
            except json.JSONDecodeError:
                return {}
    return {}


def tool_results(tool: str, tool_dir: Path, stdout: str, args: argparse.Namespace) -> dict[str, Any]:
    """What the finished run of ``tool`` reports: its own wall seconds, documents removed, extras."""
    if tool == "text-dedup":
        timers, counts = dedup_speed.parse_td_log(stdout)
        meta = json.loads((tool_dir / "hf" / "meta.json").read_text())
        kept = counts.get("After")
        return {
            "tool_wall_s": timers.get("Total"),
            "stage_s": {k: v for k, v in timers.items() if k != "Total"},
            "removed": meta["rows"] - kept if kept is not None else None,
            "short_rows_dropped": meta["short_rows"],
            "rows_hashed": counts.get("Before"),
            "config": {
                "text_dedup": dedup_speed.td_version(args.td_python),
                "num_proc": args.workers,
                "cli": f"{dedup_speed.TD_DEFAULTS}, no --debug",
            },
        }
    measured = _last_json(stdout)
    out: dict[str, Any] = {"tool_wall_s": measured.get("wall_s"), "config": measured.get("config")}
    if tool == "ours":
        out["removed"] = measured.get("removed")
        out["chains"] = measured.get("chains")
    elif tool == "datatrove-default":
        out["stage_s"] = measured.get("stage_s")
        clusters: set[str] = set()
        n = 0
        with (tool_dir / "pred.jsonl").open(encoding="utf-8") as fh:
            for line in fh:
                clusters.add(json.loads(line)["cluster"])
                n += 1
        out["removed"] = n - len(clusters)  # one document kept per cluster
        out["documents_seen"] = n
    return out


def error_tail(log_path: Path, stdout: str, chars: int = 1500) -> str:
    text = (log_path.read_text(errors="replace") if log_path.is_file() else "") + "\n" + (stdout or "")
    return text.strip()[-chars:]


def measure_tool(
    tool: str, size_dir: Path, corpus: Path, summary: dict[str, Any], args: argparse.Namespace
) -> dict[str, Any]:
    """Prepare, run and measure ``tool`` on one corpus size; never raises for the tool's own failures."""
    tool_dir = size_dir / tool
    log_path = size_dir / "logs" / f"{tool}.stderr"
    docs, text_mb = summary["documents"], summary["text_mb"]
    record: dict[str, Any] = {"tool": tool, "mb": summary["requested_mb"], "text_mb": text_mb, "docs": docs}
    t0 = time.perf_counter()
    try:
        record["input"] = prepare_tool(tool, tool_dir, corpus, args)
    except (Exception, SystemExit) as exc:  # a peer that cannot even be set up is reported, not fatal
        return {**record, "status": "failed", "stage": "prepare", "error_tail": str(exc)[-1500:]}
    record["prepare_s"] = round(time.perf_counter() - t0, 1)
    cmd, env = tool_command(tool, tool_dir, corpus, args)
    if args.wait_load:
        record["load_wait"] = dedup_speed.wait_for_load(args.wait_load)
    log(f"mb={record['mb']} {tool}: {' '.join(cmd)}")
    disk_before = du_bytes(tool_dir)
    load_before = os.getloadavg()[0]
    with DiskPeak(tool_dir, args.disk_interval) as disk:
        run = dedup_speed.measure_process(cmd, log_path, env=env, timeout=args.timeout)
    disk_after = du_bytes(tool_dir)
    stdout = run.pop("stdout") or ""
    (size_dir / "logs" / f"{tool}.stdout").write_text(stdout)
    wall = run.pop("process_wall_s")
    if run["timed_out"]:
        status = "timeout"
    elif run["returncode"] != 0:
        status = "failed"
    else:
        status = "ok"
    record.update(
        {
            "status": status,
            "wall_s": wall,
            "docs_per_s": round(docs / wall, 1) if wall and status == "ok" else None,
            "mb_per_s": round(text_mb / wall, 3) if wall and status == "ok" else None,
            **{k: v for k, v in run.items() if k not in ("timed_out",)},
            "disk_input_mb": round(disk_before / MB, 1),
            "disk_mb": round((disk_after - disk_before) / MB, 1),
            "disk_peak_mb": round((disk.peak - disk_before) / MB, 1),
            "workers": args.workers,
            "load_1m_before": round(load_before, 2),
            "load_1m_after": round(os.getloadavg()[0], 2),
        }
    )
    if status != "ok":
        tail = error_tail(log_path, stdout)
        record["error_tail"] = tail or (f"killed after {args.timeout:g} s" if run["timed_out"] else "")
        return record
    try:
        results = tool_results(tool, tool_dir, stdout, args)
    except Exception as exc:  # noqa: BLE001  (the timing stands; the output could not be read)
        results = {"results_error": f"{type(exc).__name__}: {exc}"}
    record.update(results)
    removed = record.get("removed")
    record["removed_fraction"] = round(removed / docs, 4) if removed is not None and docs else None
    return record


# ------------------------------------------------------------------------------------------- main


def run_size(mb: float, args: argparse.Namespace, facts: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Build the corpus of ``mb`` MB, then measure every tool on it; yields one record per tool."""
    tools = args.tools.split(",")
    size_dir = args.work / f"mb{mb:g}"
    args.work.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(args.work).free
    need = mb * MB * args.disk_factor
    log(f"mb={mb:g}: df -h {args.work}: {df_line(args.work)}")
    if free < need:
        reason = (
            f"{free / 1e9:.1f} GB free < {need / 1e9:.1f} GB (--disk-factor {args.disk_factor} x {mb:g} MB)"
        )
        log(f"mb={mb:g}: skipped, {reason}")
        for tool in tools:
            yield {"tool": tool, "mb": mb, "status": "skipped", "reason": reason, "machine": facts}
        return
    shutil.rmtree(size_dir, ignore_errors=True)
    corpus = size_dir / "corpus"
    t0 = time.perf_counter()
    summary = make_text_corpus.build_corpus(corpus, mb, args.files, args.en_fraction, args.seed)
    summary["requested_mb"] = mb
    log(f"mb={mb:g}: corpus {json.dumps(summary)} in {time.perf_counter() - t0:.0f} s")
    corpus_facts = {k: summary[k] for k in ("documents_by_lang", "text_mb_by_lang", "files")}
    try:
        for tool in tools:
            record = measure_tool(tool, size_dir, corpus, summary, args)
            if not args.keep:
                shutil.rmtree(size_dir / tool, ignore_errors=True)
            yield {**record, "corpus": corpus_facts, "machine": facts}
    finally:
        if not args.keep:
            shutil.rmtree(size_dir, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=Path("/tmp/dedupscale"))
    ap.add_argument("--mb", default="50,200,1000", help="comma-separated corpus sizes, 10^6 bytes of text")
    ap.add_argument("--tools", default=",".join(TOOLS), help=f"comma-separated subset of {','.join(TOOLS)}")
    ap.add_argument("--timeout", type=float, default=7200.0, help="seconds per tool run before it is killed")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--shards", type=int, default=16, help="Parquet shards of our clean stage")
    ap.add_argument("--files", type=int, default=16, help="JSONL files of the corpus (datatrove tasks)")
    ap.add_argument("--en-fraction", type=float, default=0.3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--td-python", default="/tmp/tdvenv/bin/python", help="python of the text-dedup venv")
    ap.add_argument(
        "--dt-python", default="/tmp/dtvenv_dedup/bin/python", help="python of the datatrove venv"
    )
    ap.add_argument("--disk-interval", type=float, default=2.0, help="seconds between disk samples")
    ap.add_argument(
        "--disk-factor", type=float, default=10.0, help="skip a size unless free disk >= this x its text size"
    )
    ap.add_argument("--wait-load", type=float, default=None, help="before each run, wait until load < this")
    ap.add_argument("--keep", action="store_true", help="keep every work folder")
    ap.add_argument("--out", type=Path, default=None, help="also append the JSON lines to this file")
    ap.add_argument("--run-ours", type=Path, default=None, help=argparse.SUPPRESS)  # the subprocess of 'ours'
    args = ap.parse_args()

    if args.run_ours:
        print(json.dumps(run_ours_stage(args.run_ours.resolve(), args.workers)), flush=True)
        return
    unknown = set(args.tools.split(",")) - set(TOOLS)
    if unknown:
        ap.error(f"unknown tools {sorted(unknown)}; choose from {','.join(TOOLS)}")
    args.work = args.work.resolve()
    facts = machine_facts()
    for mb in (float(v) for v in args.mb.split(",")):
        for record in run_size(mb, args, facts):
            dedup_speed.emit(record, args.out)


if __name__ == "__main__":
    main()
