"""The training stages: pretrain, evaluate, and the curation ablation (no Dagster, no Beam).

Each runs its work as a fresh process (``python -m training.train`` / ``torchrun``,
``python -m training.run_eval``) so CUDA is never initialised in the orchestrator, through
``job.launch`` (Dagster passes one that streams progress through Pipes; the default streams the
output lines to ``job.log`` and reads the result file). Every version goes through
``storage.transaction``. The model's run directory ``<data_dir>/model/work-<fingerprint>`` survives an
interruption: running again with the same config and data resumes from its latest checkpoint.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
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
    for name in version.manifest().get("carried_from") or ():  # shards listed where they were written
        local_copy(storage.StageVersion(version.root, name))
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


ABLATION_CORPORA = ("raw", "curated")


def spread(values: list[float | None]) -> dict[str, Any]:
    """Mean, sample standard deviation, min, max and count of the finite ``values`` (None: none)."""
    xs = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    if not xs:
        return {"mean": None, "std": None, "min": None, "max": None, "n": 0, "values": []}
    mean = sum(xs) / len(xs)
    std = math.sqrt(sum((x - mean) ** 2 for x in xs) / (len(xs) - 1)) if len(xs) > 1 else 0.0
    return {"mean": mean, "std": std, "min": min(xs), "max": max(xs), "n": len(xs), "values": xs}


def _mean_curve(curves: list[dict[str, list]]) -> dict[str, list]:
    """The step-wise mean of training-loss curves of equal steps (the first curve's steps)."""
    if not curves:
        return {"step": [], "loss": [], "lr": []}
    n = min(len(c["loss"]) for c in curves)
    return {
        "step": list(curves[0]["step"][:n]),
        "loss": [sum(c["loss"][i] for c in curves) / len(curves) for i in range(n)],
        "lr": list(curves[0].get("lr", [])[:n]),
    }


def _eval_set(version: storage.StageVersion, description: str) -> dict[str, Any]:
    split = version.manifest()["splits"].get("val") or {}
    return {
        "stage": version.stage,
        "version": version.name,
        "split": "val",
        "documents": int(split.get("documents", 0)),
        "tokens": int(split.get("tokens", 0)),
        "description": description,
    }


def ablation(job: StageJob) -> StageResult:
    """Train the same model on ``upstream[1]`` (raw tokens) and ``upstream[0]`` (curated tokens),
    ``model.ablation_seeds`` seeds each, and evaluate every model on the same held-out sets.

    Evaluation sets: ``raw_val``, the validation split of the raw token dataset -- raw documents
    whose id hash puts them in validation (duplicates follow their dedup survivor), which neither
    model trained on and which the curation filters did not choose: the neutral set; and
    ``curated_val``, the curated dataset's validation split (the curated side's own). The manifest's
    ``ablation`` holds every run and, per corpus and set, the mean and spread over seeds; ``report``
    keeps one summary per corpus (means; ``heldout_*`` on the neutral set) for older readers.
    """
    curated, raw, tokenizer = job.upstream_version(0), job.upstream_version(1), job.upstream_version(2)
    section = _train_section(job.cfg)
    fp = fingerprint(job.name, section, curated.name, raw.name)
    keep = job.cfg.output.keep_versions
    base = job.cfg.model
    seeds = [base.seed + i for i in range(base.ablation_seeds)]
    with storage.transaction(job.data_dir, job.name, fp, reuse=job.reuse, keep_versions=keep) as tx:
        if tx.reused is not None:
            return StageResult(tx.reused, tx.manifest or {}, reused=True)
        root = work_dir(job, fp)
        data = {"raw": raw, "curated": curated}
        eval_sets = {
            "raw_val": (
                raw,
                "raw documents in the validation split (document-id hash; duplicates follow their "
                "survivor): held out from both models and never chosen by the curation filters (neutral)",
            ),
            "curated_val": (curated, "the curated dataset's validation split (the curated side's own)"),
        }
        local = {name: local_copy(v) for name, v in data.items()}
        runs: list[dict[str, Any]] = []
        for corpus in ABLATION_CORPORA:
            for seed in seeds:
                model_cfg = dataclasses.replace(base, seed=seed)
                summary = _run_training_with(job, model_cfg, local[corpus], root / f"{corpus}-seed{seed}")
                runs.append(
                    {
                        "corpus": corpus,
                        "seed": seed,
                        "steps": summary["steps"],
                        "tokens_seen": summary["tokens_seen"],
                        "final_train_loss": summary["final_train_loss"],
                        "loss_curve": summary["loss_curve"],
                    }
                )
        # every model on every set, in one process
        out = root / "eval.json"
        cmd = ablation_eval_command(
            {f"{r['corpus']}-seed{r['seed']}": root / f"{r['corpus']}-seed{r['seed']}" for r in runs},
            {name: local_copy(version) for name, (version, _) in eval_sets.items()},
            out,
            base.device,
        )
        scores = _launcher(job)(cmd, out)["results"]
        storage.atomic_write_json(out, scores)
        for r in runs:
            r["eval"] = scores[f"{r['corpus']}-seed{r['seed']}"]
        ablation_doc = _ablation_summary(runs, seeds, {k: _eval_set(*v) for k, v in eval_sets.items()})
        report = {}
        for corpus in ABLATION_CORPORA:
            mine = [r for r in runs if r["corpus"] == corpus]
            split = data[corpus].manifest()["splits"]["train"]
            neutral = ablation_doc["summary"][corpus]["raw_val"]
            report[corpus] = {
                "train_documents": split["documents"],
                "train_tokens_available": split["tokens"],
                "tokens_seen": mine[0]["tokens_seen"],
                "steps": mine[0]["steps"],
                "seeds": len(mine),
                "final_train_loss": spread([r["final_train_loss"] for r in mine])["mean"],
                "heldout_set": "raw_val",
                "heldout_loss": neutral["loss"]["mean"],
                "heldout_ppl": neutral["ppl"]["mean"],
                "heldout_ppl_std": neutral["ppl"]["std"],
                "curated_val_ppl": ablation_doc["summary"][corpus]["curated_val"]["ppl"]["mean"],
                "loss_curve": _mean_curve([r["loss_curve"] for r in mine]),
            }
        for r in runs:
            r.pop("loss_curve")
        tx.adopt(root)
        manifest = tx.commit(
            config=section,
            upstream={curated.stage: curated.name, raw.stage: raw.name, tokenizer.stage: tokenizer.name},
            extra={"report": report, "ablation": ablation_doc},
        )
    return StageResult(tx.version, manifest)


def ablation_eval_command(runs: dict[str, Path], sets: dict[str, Path], out: Path, device: str) -> list[str]:
    """``python -m training.ablation_eval``: every run's checkpoint on every set's validation split."""
    args = [f"--run={name}={path}" for name, path in runs.items()]
    args += [f"--data={name}={path}" for name, path in sets.items()]
    return [sys.executable, "-m", "training.ablation_eval", *args, "--out", str(out), "--device", device]


def _run_training_with(job: StageJob, model_cfg: Any, data: Path, out: Path) -> dict[str, Any]:
    """``_run_training`` with another ``model`` section (the ablation's per-seed settings)."""
    cfg = dataclasses.replace(job.cfg, model=model_cfg)
    return _run_training(dataclasses.replace(job, cfg=cfg), data, out)


def _ablation_summary(
    runs: list[dict[str, Any]], seeds: list[int], eval_sets: dict[str, Any]
) -> dict[str, Any]:
    """Per corpus and evaluation set, the spread of loss and perplexity over seeds; per set, the
    seed-paired relative perplexity reduction of curation ((raw - curated) / raw)."""
    summary: dict[str, Any] = {}
    for corpus in ABLATION_CORPORA:
        mine = [r for r in runs if r["corpus"] == corpus]
        summary[corpus] = {
            name: {
                "loss": spread([r["eval"][name]["loss"] for r in mine]),
                "ppl": spread([r["eval"][name]["ppl"] for r in mine]),
            }
            for name in eval_sets
        }
    comparison = {}
    for name in eval_sets:
        by_seed = {(r["corpus"], r["seed"]): r["eval"][name]["ppl"] for r in runs}
        pairs: list[tuple[float, float]] = []
        for seed in seeds:
            raw_ppl, curated_ppl = by_seed.get(("raw", seed)), by_seed.get(("curated", seed))
            if raw_ppl is not None and curated_ppl is not None:
                pairs.append((float(raw_ppl), float(curated_ppl)))
        comparison[name] = {
            "ppl_reduction": spread([(r - c) / r for r, c in pairs if r]),
            "curated_better": sum(1 for r, c in pairs if c < r),
            "seeds": len(pairs),
        }
    return {
        "seeds": seeds,
        "neutral_set": "raw_val",
        "eval_sets": eval_sets,
        "runs": runs,
        "summary": summary,
        "comparison": comparison,
    }
