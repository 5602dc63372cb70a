"""The data job on the FnApiRunner and on a Dask cluster, on the same cores: time, memory, equality.

Starts a Dask scheduler and ``--workers`` single-threaded worker processes on 127.0.0.1 (the way a
deployment runs them: separate processes, nothing shared but the file system), then runs the data
stages (``assets.graph.DATA_STAGES``: raw, clean, dedup, filtered, bias_report, tokenizer, tokens)
twice on the same corpus: FnApiRunner multi_processing with ``--workers`` workers, and
``runner.runner: DaskRunner``. While a stage runs, the RSS of every worker process (FnApiRunner: the
SDK worker processes; Dask: the worker processes), of the driver and of the scheduler is sampled
every 0.1 s. Prints one JSON line: per-stage seconds and peak RSS (MB) for both runners, the ratio of
the totals, and whether every stage's files are identical (sha256 of each file, version names aside).

Usage::

    python bench/make_text_corpus.py --out /tmp/daskbench/corpus --mb 50 --files 4
    python bench/dask_runner.py --corpus /tmp/daskbench/corpus --work /tmp/daskbench
    python bench/dask_runner.py --mb 5          # generates its corpus under --work
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import psutil  # noqa: E402  (a dependency of distributed)

from assets.graph import DATA_STAGES, run_stage  # noqa: E402
from pipelines.beam_stage import pipeline_options  # noqa: E402
from pipelines.config import load_config  # noqa: E402

VERSION_NAME = re.compile(rb"v-[0-9a-f]{16}-\d{8}T\d{6,12}-[0-9a-f]{4}")


class Sampler:
    """Peak RSS per process group while a block runs (sampled every ``every`` seconds)."""

    def __init__(self, groups: dict[str, Any], every: float = 0.1) -> None:
        self.groups = groups  # name -> callable returning the psutil.Process list to sample now
        self.every = every
        self.peak: dict[str, dict[int, int]] = {name: {} for name in groups}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            for name, procs in self.groups.items():
                for p in procs():
                    try:
                        rss = p.memory_info().rss
                    except (psutil.NoSuchProcess, psutil.AccessDenied):
                        continue
                    self.peak[name][p.pid] = max(self.peak[name].get(p.pid, 0), rss)
            self._stop.wait(self.every)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()

    def summary(self) -> dict[str, float]:
        """Largest peak (MB) of any one process of each group."""
        return {name: round(max(peaks.values(), default=0) / 2**20, 1) for name, peaks in self.peak.items()}


def start_cluster(work: Path, workers: int, memory_limit: str) -> tuple[str, list[subprocess.Popen]]:
    scheduler_file = work / "scheduler.json"
    scheduler_file.unlink(missing_ok=True)
    dask = [sys.executable, "-m", "dask"]
    logs = work / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    procs = [
        subprocess.Popen(
            dask
            + ["scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard"]
            + ["--scheduler-file", str(scheduler_file), "--idle-timeout", "900"],
            stdout=open(logs / "scheduler.log", "wb"),  # noqa: SIM115
            stderr=subprocess.STDOUT,
        )
    ]
    deadline = time.monotonic() + 60
    while not scheduler_file.exists():
        if time.monotonic() > deadline:
            raise RuntimeError("the Dask scheduler did not start; see " + str(logs / "scheduler.log"))
        time.sleep(0.2)
    address = json.loads(scheduler_file.read_text())["address"]
    for i in range(workers):
        procs.append(
            subprocess.Popen(
                dask
                + ["worker", address, "--nthreads", "1", "--nworkers", "1", "--no-nanny", "--no-dashboard"]
                + ["--death-timeout", "60", "--memory-limit", memory_limit, "--name", f"w{i}"]
                + ["--local-directory", str(work / f"worker-{i}")],
                stdout=open(logs / f"worker-{i}.log", "wb"),  # noqa: SIM115
                stderr=subprocess.STDOUT,
            )
        )
    from distributed import Client

    with Client(address, timeout=60) as client:
        client.wait_for_workers(workers, timeout=120)
    return address, procs


def stop(procs: list[subprocess.Popen]) -> None:
    for p in reversed(procs):
        p.terminate()
    for p in procs:
        try:
            p.wait(timeout=20)
        except subprocess.TimeoutExpired:
            p.kill()


def files_of(version_dir: Path) -> dict[str, str]:
    out = {}
    for f in sorted(version_dir.rglob("*")):
        if f.is_file() and f.name not in ("manifest.json", "_SUCCESS"):
            out[str(f.relative_to(version_dir))] = hashlib.sha256(
                VERSION_NAME.sub(b"v", f.read_bytes())
            ).hexdigest()
    return out


def run_chain(
    name: str, runner: dict[str, Any], corpus: Path, data: Path, groups: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, dict[str, str]]]:
    cfg = load_config(None, {"paths": {"input": str(corpus), "data_dir": str(data)}, "runner": runner})
    options = pipeline_options(cfg.runner)
    stages: dict[str, Any] = {}
    files: dict[str, dict[str, str]] = {}
    for stage in DATA_STAGES:
        started = time.perf_counter()
        with Sampler(groups) as sampler:
            result = run_stage(stage, cfg, options, log=lambda _: None)
        stages[stage] = {"s": round(time.perf_counter() - started, 2), "peak_rss_mb": sampler.summary()}
        files[stage] = files_of(Path(str(result.version.path)))
        print(f"[{name}] {stage}: {stages[stage]}", file=sys.stderr, flush=True)
    total = round(sum(s["s"] for s in stages.values()), 2)
    return {"total_s": total, "stages": stages}, files


def run_runner(which: str, corpus: Path, work: Path, workers: int, memory_limit: str) -> dict[str, Any]:
    """One runner's chain in this process: ``{"report": ..., "files": ...}``."""
    me = psutil.Process()
    if which == "fnapi":

        def sdk_workers() -> list[psutil.Process]:
            return [c for c in me.children(recursive=True) if "sdk_worker" in " ".join(c.cmdline())]

        runner = {"runner": "FnApiRunner", "direct_running_mode": "multi_processing"}
        runner["direct_num_workers"] = workers
        groups = {"workers": sdk_workers, "driver": lambda: [me]}
        report, files = run_chain("fnapi", runner, corpus, work / "data-fnapi", groups)
        return {"report": report, "files": files}
    address, procs = start_cluster(work, workers, memory_limit)
    try:
        dask_procs = [psutil.Process(p.pid) for p in procs]
        groups = {
            "workers": lambda: dask_procs[1:],
            "driver": lambda: [me],
            "scheduler": lambda: dask_procs[:1],
        }
        runner = {"runner": "DaskRunner", "dask_address": address}
        report, files = run_chain("dask", runner, corpus, work / "data-dask", groups)
    finally:
        from pipelines.runners.dask_fixes import close_clients

        close_clients()
        stop(procs)
    return {"report": report, "files": files}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--corpus", type=Path, help="input corpus (default: generate --mb MB under --work)")
    ap.add_argument(
        "--mb", type=float, default=50.0, help="corpus size to generate when --corpus is not given"
    )
    ap.add_argument("--work", type=Path, default=None, help="scratch directory (default: a temporary one)")
    ap.add_argument("--workers", type=int, default=2, help="FnApiRunner workers = Dask worker processes")
    ap.add_argument("--memory-limit", default="6GiB", help="Dask worker memory limit")
    ap.add_argument("--only", choices=("fnapi", "dask"), help="run one runner in this process (internal)")
    args = ap.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="daskbench-"))
    work.mkdir(parents=True, exist_ok=True)
    corpus = args.corpus
    if corpus is None:
        corpus = work / "corpus"
        if not (corpus / "corpus.json").is_file():
            subprocess.run(
                [sys.executable, str(REPO / "bench" / "make_text_corpus.py"), "--out", str(corpus)]
                + ["--mb", str(args.mb), "--files", str(2 * args.workers)],
                check=True,
                stdout=subprocess.DEVNULL,
            )
    if args.only:
        print(json.dumps(run_runner(args.only, corpus, work, args.workers, args.memory_limit)))
        return
    # each runner in a fresh process, so neither inherits the other's driver memory
    runs = {}
    for which in ("fnapi", "dask"):
        cmd = [sys.executable, __file__, "--only", which, "--corpus", str(corpus), "--work", str(work)]
        cmd += ["--workers", str(args.workers), "--memory-limit", args.memory_limit]
        out = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True).stdout
        runs[which] = json.loads(out.strip().splitlines()[-1])
    corpus_mb = sum(f.stat().st_size for f in corpus.rglob("*") if f.is_file()) / 1e6
    fnapi, dask = runs["fnapi"]["report"], runs["dask"]["report"]
    beam_stages = [s for s in DATA_STAGES if s != "tokenizer"]  # the tokenizer is in-process Python

    def beam_total(r: dict[str, Any]) -> float:
        return round(sum(r["stages"][s]["s"] for s in beam_stages), 2)

    report = {
        "corpus": str(corpus),
        "corpus_mb": round(corpus_mb, 1),
        "workers": args.workers,
        "fnapi": fnapi,
        "dask": dask,
        "ratio_total": round(dask["total_s"] / fnapi["total_s"], 2),
        "ratio_beam_stages": round(beam_total(dask) / beam_total(fnapi), 2),
        "ratio_dedup": round(dask["stages"]["dedup"]["s"] / fnapi["stages"]["dedup"]["s"], 2),
        "identical": {s: runs["fnapi"]["files"][s] == runs["dask"]["files"][s] for s in beam_stages},
    }
    print(json.dumps(report))


if __name__ == "__main__":
    main()
