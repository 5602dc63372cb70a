"""Dagster metadata and checks of the training stages: the model, its evaluation, the ablation."""

from typing import Any

import dagster as dg

from assets.reporting import bar_chart_md, line_chart_md
from pipelines import storage
from pipelines.reports import markdown_table
from pipelines.stage import StageResult
from training.flops import format_mfu


def _fmt(x: Any, digits: int = 4) -> str:
    return "n/a" if x is None else f"{x:.{digits}g}" if isinstance(x, float) else str(x)


def _float_or_na(x: Any) -> Any:
    return dg.MetadataValue.float(float(x)) if x is not None else dg.MetadataValue.text("n/a")


def model_metadata(result: StageResult) -> dict[str, Any]:
    """Loss curve, final losses, throughput, MFU, size and device of a training run."""
    s = result.manifest["summary"]
    curve, val = s.get("loss_curve", {}), s.get("val_curve", {})
    series = {"train loss": (curve.get("step", []), curve.get("loss", []))}
    if val.get("step"):
        series["validation loss"] = (val["step"], val["loss"])
    peak = s.get("peak_flops")
    mfu = format_mfu(s.get("mfu"), s.get("mfu_note")) + (f" (peak {peak:.3g} FLOP/s)" if peak else "")
    return {
        "loss_curve": dg.MetadataValue.md(line_chart_md("Loss", series, xlabel="step", ylabel="loss")),
        "final_train_loss": dg.MetadataValue.float(float(s["final_train_loss"] or 0.0)),
        "val_loss": _float_or_na(s.get("val_loss")),
        "val_perplexity": _float_or_na(s.get("val_ppl")),
        "tokens_per_second": dg.MetadataValue.float(float(s.get("tokens_per_s") or 0.0)),
        "mfu": dg.MetadataValue.text(mfu),
        "parameters": dg.MetadataValue.int(int(s["params"])),
        "steps": dg.MetadataValue.int(int(s["steps"])),
        "tokens_seen": dg.MetadataValue.int(int(s["tokens_seen"])),
        "device": dg.MetadataValue.text(
            f"{s.get('device')} {s.get('gpu_name') or ''} x{s.get('world_size')} {s.get('precision')}".strip()
        ),
        "data_time_share": dg.MetadataValue.float(float(s.get("data_time_frac") or 0.0)),
    }


def evaluation_metadata(result: StageResult) -> dict[str, Any]:
    """Validation loss and perplexity, and generated samples."""
    s = result.manifest["summary"]
    rows = [
        {"prompt": x["prompt"], "greedy": x["greedy"][:160], "top-k (40, T=0.8)": x["top_k"][:160]}
        for x in s.get("samples", [])
    ]
    return {
        "val_loss": dg.MetadataValue.text(_fmt(s.get("val_loss"))),
        "val_perplexity": dg.MetadataValue.text(_fmt(s.get("val_ppl"))),
        "val_tokens": dg.MetadataValue.int(int(s.get("val_tokens") or 0)),
        "eval_tokens_per_second": dg.MetadataValue.text(_fmt(s.get("eval_tokens_per_s"))),
        "step": dg.MetadataValue.int(int(s.get("step") or 0)),
        "samples": dg.MetadataValue.md(markdown_table(rows) if rows else "_no samples (mlm model)_"),
    }


def perplexity_is_finite(stage: Any, version: storage.StageVersion) -> dg.AssetCheckResult:
    """The evaluated validation perplexity is a finite number below the uniform-guess bound (vocab size)."""
    manifest = version.manifest()
    s = manifest["summary"]
    model_stage = stage.upstream[0]
    model = storage.StageVersion(version.root.parent / model_stage, manifest["upstream"][model_stage])
    vocab = model.manifest()["summary"]["model_config"]["vocab_size"]
    ppl = s.get("val_ppl")
    ok = ppl is not None and 1.0 <= ppl < vocab
    return dg.AssetCheckResult(passed=bool(ok), metadata={"val_ppl": _fmt(ppl), "vocab_size": vocab})


def _mean_spread(stats: Any) -> str:
    if not stats or stats.get("mean") is None:
        return "n/a"
    if (stats.get("n") or 0) > 1:
        return f"{stats['mean']:.4g} ± {stats['std']:.2g}"
    return f"{stats['mean']:.4g}"


def ablation_metadata(result: StageResult) -> dict[str, Any]:
    """Raw vs curated over seeds: held-out perplexity (mean ± standard deviation) on the neutral raw
    validation set and on the curated validation set, per-seed runs, and mean loss curves."""
    manifest = result.manifest
    report = manifest["report"]
    ab = manifest.get("ablation") or {}
    neutral = ab.get("neutral_set")
    sets = dict(sorted((ab.get("eval_sets") or {}).items(), key=lambda kv: (kv[0] != neutral, kv[0])))
    summary = ab.get("summary") or {}
    rows = [
        {
            "corpus": k,
            "train documents": v["train_documents"],
            "tokens seen": v["tokens_seen"],
            "seeds": v.get("seeds", 1),
            "final train loss": _fmt(v.get("final_train_loss")),
            **(
                {
                    f"{name} perplexity": _mean_spread(summary.get(k, {}).get(name, {}).get("ppl"))
                    for name in sets
                }
                if sets
                else {"held-out perplexity": _fmt(v["heldout_ppl"])}
            ),
        }
        for k, v in report.items()
    ]
    curves = {
        f"{k} train loss": (v["loss_curve"]["step"], v["loss_curve"]["loss"]) for k, v in report.items()
    }
    ppl = {
        k: float(summary[k][neutral]["ppl"]["mean"])
        if neutral and summary.get(k, {}).get(neutral, {}).get("ppl", {}).get("mean") is not None
        else float(v["heldout_ppl"])
        for k, v in report.items()
        if v.get("heldout_ppl") is not None
    }
    meta: dict[str, Any] = {
        "comparison": dg.MetadataValue.md(markdown_table(rows)),
        "heldout_perplexity_chart": dg.MetadataValue.md(
            bar_chart_md("Held-out perplexity, neutral set (lower is better)", ppl, xlabel="perplexity")
        ),
        "loss_curves": dg.MetadataValue.md(
            line_chart_md("Training loss (mean over seeds)", curves, xlabel="step", ylabel="loss")
        ),
    }
    comparison = ab.get("comparison") or {}
    if comparison:
        lines = []
        for name, c in comparison.items():
            red = c.get("ppl_reduction") or {}
            if red.get("mean") is None:
                lines.append(f"{name}: n/a")
                continue
            lines.append(
                f"{name}: {100 * red['mean']:.1f}% ± {100 * (red.get('std') or 0.0):.1f}% perplexity reduction "
                f"with curation (curated better in {c.get('curated_better')}/{c.get('seeds')} seeds)"
            )
        meta["perplexity_reduction"] = dg.MetadataValue.text("; ".join(lines))
        meta["seeds"] = dg.MetadataValue.text(", ".join(map(str, ab.get("seeds", []))))
        meta["eval_sets"] = dg.MetadataValue.md(
            "\n".join(
                f"- `{k}`: {v.get('description', '')} ({v.get('documents')} documents, {v.get('tokens')} tokens)"
                for k, v in sets.items()
            )
        )
        meta["runs"] = dg.MetadataValue.md(
            markdown_table(
                [
                    {
                        "corpus": r["corpus"],
                        "seed": r["seed"],
                        "final train loss": _fmt(r.get("final_train_loss")),
                        **{f"{k} ppl": _fmt(e.get("ppl")) for k, e in r.get("eval", {}).items()},
                    }
                    for r in ab.get("runs", [])
                ]
            )
        )
    else:  # a version written before seeds and the neutral set
        gain = (ppl["raw"] - ppl["curated"]) / ppl["raw"] if len(ppl) == 2 and ppl.get("raw") else None
        meta["perplexity_reduction"] = dg.MetadataValue.text(
            "n/a" if gain is None else f"{100 * gain:.1f}% lower with curation"
        )
    return meta
