"""Training assets: pretrain the model on the token dataset, then evaluate it.

Training runs as a fresh process (``python -m training.train``, or ``torchrun`` for several
processes) so CUDA is never initialised inside the Dagster run worker; its log lines stream into the
Dagster log while it runs. The run directory ``data/model/work-<fingerprint>`` survives an
interruption: re-materializing with the same config and data resumes from its latest checkpoint.
"""

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import dagster as dg

from assets.config import TrainAssetConfig, section_values
from assets.reporting import bar_chart_md, line_chart_md
from assets.resources import BeamRunner, CorpusforgeSettings
from pipelines import storage
from pipelines.config import CorpusforgeConfig, fingerprint, to_dict
from pipelines.reports import markdown_table

MODEL_STAGE = "model"
EVAL_STAGE = "evaluation"
TOKENS_STAGE = "tokens"
TOKENIZER_STAGE = "tokenizer"


def _stream(context: dg.AssetExecutionContext, cmd: list[str], cwd: Path) -> None:
    """Run ``cmd``, forwarding its output lines to the Dagster log; raise with the tail on failure."""
    context.log.info("running: " + " ".join(cmd))
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    tail: list[str] = []
    with subprocess.Popen(
        cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    ) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            line = line.rstrip()
            if line:
                tail = (tail + [line])[-40:]
                context.log.info(line)
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd[0]} exited with {proc.returncode}:\n" + "\n".join(tail))


def _train_command(cfg: CorpusforgeConfig, data: Path, out: Path, config_file: Path) -> list[str]:
    args = ["-m", "training.train", "--data", str(data), "--out", str(out), "--config", str(config_file)]
    n = cfg.train.nproc_per_node
    if n > 1:
        torchrun = Path(sys.executable).with_name("torchrun")
        return [str(torchrun), "--standalone", f"--nproc_per_node={n}", *args]
    return [sys.executable, *args]


def train_model(
    context: dg.AssetExecutionContext, cfg: CorpusforgeConfig, reuse: bool
) -> tuple[storage.StageVersion, dict]:
    """Train on the committed token dataset; returns the committed ``model`` version and its summary."""
    data_dir = cfg.paths.data_dir
    tokens = storage.current_version(data_dir, TOKENS_STAGE, asset_hint="token_dataset")
    tokenizer = storage.current_version(data_dir, TOKENIZER_STAGE, asset_hint="tokenizer")
    section = {"train": to_dict(cfg.train)}
    fp = fingerprint(MODEL_STAGE, section, tokens.name)
    if reuse and (found := storage.find_reusable(data_dir, MODEL_STAGE, fp)):
        storage.point_current(found)
        return found, found.manifest()["summary"]
    work = storage.stage_root(data_dir, MODEL_STAGE) / f"work-{fp}"
    work.mkdir(parents=True, exist_ok=True)
    config_file = work / "train_config.json"
    storage.atomic_write_json(config_file, section)
    _stream(context, _train_command(cfg, tokens.path, work, config_file), Path.cwd())
    summary = json.loads((work / "summary.json").read_text())
    version = storage.new_version(data_dir, MODEL_STAGE, fp)
    version.path.rmdir()
    os.replace(work, version.path)  # the finished run directory becomes the version, atomically
    tok_manifest = tokenizer.manifest().get("tokenizer", {})
    storage.commit(
        version,
        config=section,
        upstream={TOKENS_STAGE: tokens.name, TOKENIZER_STAGE: tokenizer.name},
        entries={},
        extra={
            "summary": {k: v for k, v in summary.items() if k != "checkpoint"},
            "tokenizer_path": str(tokenizer.path / tok_manifest.get("path", "tokenizer.json")),
        },
        keep_versions=cfg.output.keep_versions,
    )
    return version, summary


def _fmt(x: Any, digits: int = 4) -> str:
    return "n/a" if x is None else f"{x:.{digits}g}" if isinstance(x, float) else str(x)


@dg.asset(
    deps=[dg.AssetKey("token_dataset")],
    group_name="training",
    description=(
        "Pretrains a decoder-only Transformer (RoPE, RMSNorm, SwiGLU, SDPA attention; presets tiny..124m; "
        "clm or mlm) on the token dataset: AdamW, warmup + cosine, bf16 on CUDA, exact resume from "
        "checkpoints (safetensors). GPU when present, CPU otherwise; torchrun when nproc_per_node > 1. "
        "Config: `train`."
    ),
)
def pretrained_model(
    context: dg.AssetExecutionContext, config: TrainAssetConfig, settings: CorpusforgeSettings
) -> dg.MaterializeResult:
    values, reuse = section_values(config)
    cfg = settings.load("train", values)
    version, s = train_model(context, cfg, reuse=reuse)
    curve = s.get("loss_curve", {})
    val = s.get("val_curve", {})
    series = {"train loss": (curve.get("step", []), curve.get("loss", []))}
    if val.get("step"):
        series["validation loss"] = (val["step"], val["loss"])
    return dg.MaterializeResult(
        metadata={
            "loss_curve": dg.MetadataValue.md(line_chart_md("Loss", series, xlabel="step", ylabel="loss")),
            "final_train_loss": dg.MetadataValue.float(float(s["final_train_loss"] or 0.0)),
            "val_loss": dg.MetadataValue.float(float(s["val_loss"]))
            if s.get("val_loss") is not None
            else dg.MetadataValue.text("n/a"),
            "val_perplexity": dg.MetadataValue.float(float(s["val_ppl"]))
            if s.get("val_ppl") is not None
            else dg.MetadataValue.text("n/a"),
            "tokens_per_second": dg.MetadataValue.float(float(s.get("tokens_per_s") or 0.0)),
            "mfu": dg.MetadataValue.text(
                _fmt(s.get("mfu"))
                + (
                    f" (peak {s['peak_flops']:.3g} FLOP/s)"
                    if s.get("peak_flops")
                    else " (no known peak for this device)"
                )
            ),
            "parameters": dg.MetadataValue.int(int(s["params"])),
            "steps": dg.MetadataValue.int(int(s["steps"])),
            "tokens_seen": dg.MetadataValue.int(int(s["tokens_seen"])),
            "device": dg.MetadataValue.text(
                f"{s.get('device')} {s.get('gpu_name') or ''} x{s.get('world_size')} {s.get('precision')}".strip()
            ),
            "data_time_share": dg.MetadataValue.float(float(s.get("data_time_frac") or 0.0)),
            "path": dg.MetadataValue.path(str(version.path)),
        }
    )


def _evaluate(
    context: dg.AssetExecutionContext, checkpoint: Path, data: Path, tokenizer: str, out: Path, device: str
) -> dict:
    cmd = [
        sys.executable,
        "-m",
        "training.run_eval",
        "--checkpoint",
        str(checkpoint),
        "--data",
        str(data),
        "--tokenizer",
        tokenizer,
        "--out",
        str(out),
        "--device",
        device,
    ]
    _stream(context, cmd, Path.cwd())
    return json.loads(out.read_text())


@dg.asset(
    deps=[pretrained_model],
    group_name="training",
    description="Validation loss and perplexity of the pretrained model over the whole validation split, plus greedy and top-k samples.",
)
def model_evaluation(
    context: dg.AssetExecutionContext, settings: CorpusforgeSettings
) -> dg.MaterializeResult:
    cfg = settings.load()
    data_dir = cfg.paths.data_dir
    model = storage.current_version(data_dir, MODEL_STAGE, asset_hint="pretrained_model")
    m = model.manifest()
    tokens = storage.StageVersion(storage.stage_root(data_dir, TOKENS_STAGE), m["upstream"][TOKENS_STAGE])
    version = storage.new_version(data_dir, EVAL_STAGE, fingerprint(EVAL_STAGE, model.name))
    try:
        result = _evaluate(
            context,
            model.path,
            tokens.path,
            m["tokenizer_path"],
            version.path / "evaluation.json",
            cfg.train.device,
        )
        storage.commit(
            version,
            config={},
            upstream={MODEL_STAGE: model.name},
            entries={},
            extra={"summary": result},
            keep_versions=cfg.output.keep_versions,
        )
    except BaseException:
        storage.discard(version)
        raise
    rows = [
        {"prompt": x["prompt"], "greedy": x["greedy"][:160], "top-k (40, T=0.8)": x["top_k"][:160]}
        for x in result["samples"]
    ]
    return dg.MaterializeResult(
        metadata={
            "val_loss": dg.MetadataValue.text(_fmt(result.get("val_loss"))),
            "val_perplexity": dg.MetadataValue.text(_fmt(result.get("val_ppl"))),
            "val_tokens": dg.MetadataValue.int(int(result.get("val_tokens") or 0)),
            "eval_tokens_per_second": dg.MetadataValue.text(_fmt(result.get("eval_tokens_per_s"))),
            "step": dg.MetadataValue.int(int(result.get("step") or 0)),
            "samples": dg.MetadataValue.md(markdown_table(rows) if rows else "_no samples (mlm model)_"),
        }
    )


@dg.asset_check(asset=model_evaluation, name="perplexity_is_finite", blocking=False)
def perplexity_is_finite(settings: CorpusforgeSettings) -> dg.AssetCheckResult:
    """The evaluated validation perplexity is a finite number below the uniform-guess bound (vocab size)."""
    data_dir = settings.load().paths.data_dir
    s = storage.current_version(data_dir, EVAL_STAGE).manifest()["summary"]
    model = storage.current_version(data_dir, MODEL_STAGE).manifest()
    vocab = model["summary"]["model_config"]["vocab_size"]
    ppl = s.get("val_ppl")
    ok = ppl is not None and 1.0 <= ppl < vocab
    return dg.AssetCheckResult(passed=bool(ok), metadata={"val_ppl": _fmt(ppl), "vocab_size": vocab})


ABLATION_STAGE = "ablation"
ABLATION_RAW_TOKENS = "ablation_tokens_raw"


def _train_run(context: dg.AssetExecutionContext, cfg: CorpusforgeConfig, data: Path, out: Path) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    config_file = out / "train_config.json"
    storage.atomic_write_json(config_file, {"train": to_dict(cfg.train)})
    _stream(context, _train_command(cfg, data, out, config_file), Path.cwd())
    return json.loads((out / "summary.json").read_text())


@dg.asset(
    deps=[dg.AssetKey("token_dataset"), dg.AssetKey("raw_documents")],
    group_name="training",
    pool="beam",
    description=(
        "Data-quality proof: trains the same model for the same number of tokens on the raw corpus and on "
        "the curated corpus (both tokenized with the curated tokenizer, same split by document id) and "
        "reports validation perplexity of both on the held-out curated validation split. Config: `train`."
    ),
)
def curation_ablation(
    context: dg.AssetExecutionContext,
    config: TrainAssetConfig,
    settings: CorpusforgeSettings,
    beam: BeamRunner,
) -> dg.MaterializeResult:
    from pipelines.tokens import dataset as token_dataset

    values, reuse = section_values(config)
    cfg = settings.load("train", values)
    data_dir = cfg.paths.data_dir
    curated = storage.current_version(data_dir, TOKENS_STAGE, asset_hint="token_dataset")
    tokenizer = storage.current_version(data_dir, TOKENIZER_STAGE, asset_hint="tokenizer")
    tok_path = str(tokenizer.path / tokenizer.manifest().get("tokenizer", {}).get("path", "tokenizer.json"))
    context.log.info("tokenizing the raw corpus with the curated tokenizer")
    raw = token_dataset.run(
        cfg,
        beam.pipeline_options(cfg),
        reuse=True,
        source_stage="raw",
        stage=ABLATION_RAW_TOKENS,
        split_by_cluster=True,  # raw copies of curated validation documents stay out of raw train
    ).version
    fp = fingerprint(ABLATION_STAGE, {"train": to_dict(cfg.train)}, curated.name, raw.name)
    if reuse and (found := storage.find_reusable(data_dir, ABLATION_STAGE, fp)):
        storage.point_current(found)
        report = found.manifest()["report"]
    else:
        version = storage.new_version(data_dir, ABLATION_STAGE, fp)
        try:
            report = {}
            for name, data in (("raw", raw), ("curated", curated)):
                summary = _train_run(context, cfg, data.path, version.path / name)
                ev = _evaluate(
                    context,
                    version.path / name,
                    curated.path,
                    tok_path,
                    version.path / f"{name}_eval.json",
                    cfg.train.device,
                )
                report[name] = {
                    "train_documents": data.manifest()["splits"]["train"]["documents"],
                    "train_tokens_available": data.manifest()["splits"]["train"]["tokens"],
                    "tokens_seen": summary["tokens_seen"],
                    "steps": summary["steps"],
                    "final_train_loss": summary["final_train_loss"],
                    "heldout_loss": ev["val_loss"],
                    "heldout_ppl": ev["val_ppl"],
                    "loss_curve": summary["loss_curve"],
                }
            storage.commit(
                version,
                config={"train": to_dict(cfg.train)},
                upstream={TOKENS_STAGE: curated.name, ABLATION_RAW_TOKENS: raw.name},
                entries={},
                extra={"report": report},
                keep_versions=cfg.output.keep_versions,
            )
        except BaseException:
            storage.discard(version)
            raise
    rows = [
        {
            "corpus": k,
            "train documents": v["train_documents"],
            "tokens seen": v["tokens_seen"],
            "final train loss": f"{v['final_train_loss']:.3f}",
            "held-out loss": _fmt(v["heldout_loss"]),
            "held-out perplexity": _fmt(v["heldout_ppl"]),
        }
        for k, v in report.items()
    ]
    curves = {
        f"{k} train loss": (v["loss_curve"]["step"], v["loss_curve"]["loss"]) for k, v in report.items()
    }
    ppl = {k: float(v["heldout_ppl"]) for k, v in report.items() if v["heldout_ppl"] is not None}
    gain = (ppl["raw"] - ppl["curated"]) / ppl["raw"] if len(ppl) == 2 and ppl["raw"] else None
    return dg.MaterializeResult(
        metadata={
            "comparison": dg.MetadataValue.md(markdown_table(rows)),
            "heldout_perplexity_chart": dg.MetadataValue.md(
                bar_chart_md("Held-out perplexity (lower is better)", ppl, xlabel="perplexity")
            ),
            "loss_curves": dg.MetadataValue.md(
                line_chart_md("Training loss", curves, xlabel="step", ylabel="loss")
            ),
            "perplexity_reduction": dg.MetadataValue.text(
                "n/a" if gain is None else f"{100 * gain:.1f}% lower with curation"
            ),
        }
    )


TRAINING_ASSETS = [pretrained_model, model_evaluation, curation_ablation]
TRAINING_CHECKS = [perplexity_is_finite]
