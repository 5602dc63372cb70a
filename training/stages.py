"""The training stages: pretrain, evaluate, and the curation ablation (no Dagster, no Beam).

Each runs its work as a fresh process (``python -m training.train`` / ``torchrun``,
``python -m training.run_eval``) so CUDA is never initialised in the orchestrator, through
``job.launch`` (Dagster passes one that streams progress through Pipes; the default streams the
output lines to ``job.log`` and reads the result file). Every version goes through
``storage.transaction``. The model's run directory ``<data_dir>/model/work-<fingerprint>`` survives an
interruption: running again with the same config and data resumes from its latest checkpoint.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from pipelines import fs, storage
from pipelines.config import CorpusforgeConfig, fingerprint, to_dict
from pipelines.stage import StageJob, StageResult

SUMMARY_FILE = "summary.json"


def cache_root() -> Path:
    """Where versions stored on an object store are copied for training (``CORPUSFORGE_CACHE``)."""
    return Path(os.environ.get("CORPUSFORGE_CACHE") or Path.home() / ".cache" / "corpusforge")


def local_copy(version: storage.StageVersion) -> Path:
    """A local directory holding ``version``: itself on local disk, else a cached download (the
    trainer memory-maps token shards and checkpoints are read with torch, which need local files)."""
    local = fs.local_path(version.path)
    if local is not None:
        return local
    target = cache_root() / version.stage / version.name
    done = target / storage.SUCCESS
    if not done.is_file():
        partial = target.with_name(target.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        version.path.fs.get(version.path.path, str(partial), recursive=True)
        shutil.rmtree(target, ignore_errors=True)
        os.replace(partial, target)
        done.touch()
    return target


def work_dir(job: StageJob, fp: str) -> Path:
    """The resumable run directory of a training stage: beside its versions on local disk, in the
    local cache when the data directory is an object store (the finished run is uploaded)."""
    root = storage.stage_root(job.data_dir, job.name)
    local = fs.local_path(root)
    return (local if local is not None else cache_root() / job.name) / f"work-{fp}"


def plain_launch(log: Any) -> Any:
    """A launcher that forwards the command's output lines to ``log`` and reads its result file."""

    def launch(cmd: list[str], result_file: Path) -> dict[str, Any]:
        log("running: " + " ".join(cmd))
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        tail: list[str] = []
        with subprocess.Popen(
            cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        ) as proc:
            assert proc.stdout is not None
            for line in proc.stdout:
                if line := line.rstrip():
                    tail = (tail + [line])[-40:]
                    log(line)
        if proc.returncode != 0:
            raise RuntimeError(f"{cmd[0]} exited with {proc.returncode}:\n" + "\n".join(tail))
        return json.loads(Path(result_file).read_text())

    return launch


def _launcher(job: StageJob) -> Any:
    return job.launch or plain_launch(job.log)


def train_command(cfg: CorpusforgeConfig, data: Path, out: Path, config_file: Path) -> list[str]:
    """``python -m training.train`` (or ``torchrun`` when ``model.nproc_per_node`` > 1)."""
    args = ["-m", "training.train", "--data", str(data), "--out", str(out), "--config", str(config_file)]
    n = cfg.model.nproc_per_node
    if n > 1:
        torchrun = Path(sys.executable).with_name("torchrun")
        return [str(torchrun), "--standalone", f"--nproc_per_node={n}", *args]
    return [sys.executable, *args]


def eval_command(checkpoint: Path, data: Path, tokenizer: str, out: Path, device: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "training.run_eval",
        *("--checkpoint", str(checkpoint), "--data", str(data), "--tokenizer", tokenizer),
        *("--out", str(out), "--device", device),
    ]


def _train_section(cfg: CorpusforgeConfig) -> dict[str, Any]:
    return {"train": to_dict(cfg.model)}  # the trainer's config-file format


def _run_training(job: StageJob, data: Path, out: Path) -> dict[str, Any]:
    out.mkdir(parents=True, exist_ok=True)
    config_file = out / "train_config.json"
    storage.atomic_write_json(config_file, _train_section(job.cfg))
    return _launcher(job)(train_command(job.cfg, data, out, config_file), out / SUMMARY_FILE)


def _tokenizer_file(tokenizer: storage.StageVersion) -> str:
    return fs.uri(tokenizer.path / tokenizer.manifest().get("tokenizer", {}).get("path", "tokenizer.json"))


def _local_tokenizer(location: str) -> str:
    """A local path of ``tokenizer.json`` (downloaded into the cache from an object store)."""
    if not fs.is_remote(location):
        return location
    target = cache_root() / "tokenizer-files" / hashlib.sha256(location.encode()).hexdigest()[:16]
    target.parent.mkdir(parents=True, exist_ok=True)
    if not target.is_file():
        fs.write_bytes(target, fs.path(location).read_bytes())
    return str(target)


def train(job: StageJob) -> StageResult:
    """Train on ``upstream[0]`` (token dataset) tokenized by ``upstream[1]``; commit the run."""
    tokens, tokenizer = job.upstream_version(0), job.upstream_version(1)
    section = _train_section(job.cfg)
    fp = fingerprint(job.name, section, tokens.name)
    keep = job.cfg.output.keep_versions
    with storage.transaction(job.data_dir, job.name, fp, reuse=job.reuse, keep_versions=keep) as tx:
        if tx.reused is not None:
            return StageResult(tx.reused, tx.manifest or {}, reused=True)
        summary = _run_training(job, local_copy(tokens), work_dir(job, fp))
        version = tx.adopt(work_dir(job, fp))  # the finished run directory becomes the version
        manifest = tx.commit(
            config=section,
            upstream={tokens.stage: tokens.name, tokenizer.stage: tokenizer.name},
            extra={
                "summary": {k: v for k, v in summary.items() if k != "checkpoint"},
                "tokenizer_path": _tokenizer_file(tokenizer),
            },
        )
    return StageResult(version, manifest)


def evaluate(job: StageJob) -> StageResult:
    """Evaluate ``upstream[0]`` (the model) on the validation split of the data it was trained on."""
    model = job.upstream_version(0)
    m = model.manifest()
    tokens_stage = job.upstream[1]
    tokens = storage.StageVersion(storage.stage_root(job.data_dir, tokens_stage), m["upstream"][tokens_stage])
    tokenizer_file = _local_tokenizer(m["tokenizer_path"])
    fp = fingerprint(job.name, model.name)
    keep = job.cfg.output.keep_versions
    with storage.transaction(job.data_dir, job.name, fp, reuse=job.reuse, keep_versions=keep) as tx:
        if tx.reused is not None:
            return StageResult(tx.reused, tx.manifest or {}, reused=True)
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "evaluation.json"
            cmd = eval_command(
                local_copy(model), local_copy(tokens), tokenizer_file, out, job.cfg.model.device
            )
            result = _launcher(job)(cmd, out)
            storage.atomic_write_json(tx.version.path / "evaluation.json", result)
        manifest = tx.commit(config={}, upstream={model.stage: model.name}, extra={"summary": result})
    return StageResult(tx.version, manifest)


def ablation(job: StageJob) -> StageResult:
    """Train the same model on ``upstream[1]`` (raw tokens) and ``upstream[0]`` (curated tokens) and
    evaluate both on the curated validation split with the tokenizer ``upstream[2]``."""
    curated, raw, tokenizer = job.upstream_version(0), job.upstream_version(1), job.upstream_version(2)
    section = _train_section(job.cfg)
    fp = fingerprint(job.name, section, curated.name, raw.name)
    keep = job.cfg.output.keep_versions
    with storage.transaction(job.data_dir, job.name, fp, reuse=job.reuse, keep_versions=keep) as tx:
        if tx.reused is not None:
            return StageResult(tx.reused, tx.manifest or {}, reused=True)
        root = work_dir(job, fp)
        curated_dir, tokenizer_file = local_copy(curated), _local_tokenizer(_tokenizer_file(tokenizer))
        report: dict[str, Any] = {}
        for name, data in (("raw", raw), ("curated", curated)):
            summary = _run_training(job, local_copy(data), root / name)
            out = root / f"{name}_eval.json"
            cmd = eval_command(root / name, curated_dir, tokenizer_file, out, job.cfg.model.device)
            ev = _launcher(job)(cmd, out)
            storage.atomic_write_json(out, ev)
            split = data.manifest()["splits"]["train"]
            report[name] = {
                "train_documents": split["documents"],
                "train_tokens_available": split["tokens"],
                "tokens_seen": summary["tokens_seen"],
                "steps": summary["steps"],
                "final_train_loss": summary["final_train_loss"],
                "heldout_loss": ev["val_loss"],
                "heldout_ppl": ev["val_ppl"],
                "loss_curve": summary["loss_curve"],
            }
        tx.adopt(root)
        manifest = tx.commit(
            config=section,
            upstream={curated.stage: curated.name, raw.stage: raw.name, tokenizer.stage: tokenizer.name},
            extra={"report": report},
        )
    return StageResult(tx.version, manifest)
