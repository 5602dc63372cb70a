"""Evaluate a trained checkpoint: validation loss and perplexity over the whole split, and samples.

``python -m training.run_eval --checkpoint RUN_OR_CKPT --data TOKENS_DIR --tokenizer tokenizer.json --out eval.json``

The result is written to ``--out`` (when given) and printed without samples as one JSON line; under
Dagster Pipes it is also reported as a custom message (see :mod:`training.progress`).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch

from training.batching import TokenSpec
from training.checkpoint import latest_checkpoint, load_weights, read_state
from training.data import TokenDataset, read_manifest
from training.evaluate import evaluate_loss, generate
from training.model import ModelConfig, Transformer
from training.progress import EVAL_RESULT, launched_by_pipes, open_progress
from training.token_format import TokenDataError

DEFAULT_PROMPTS = ["The king said", "To be, or not", "我们走到河边", "子曰："]


def load_model(checkpoint: str | Path, device: str = "cpu") -> tuple[Transformer, dict[str, Any]]:
    """The model of a checkpoint (or of a run directory's latest checkpoint) and its state document."""
    ckpt = Path(checkpoint)
    if not (ckpt / "state.json").is_file():
        latest = latest_checkpoint(ckpt)
        if latest is None:
            raise FileNotFoundError(f"{ckpt} holds no checkpoint")
        ckpt = latest
    doc = read_state(ckpt)
    model = Transformer(ModelConfig.from_dict(doc["model_config"]))
    load_weights(model, ckpt / "model.safetensors")
    return model.to(device).eval(), doc


def evaluate_run(
    checkpoint: str | Path,
    data_dir: str | Path,
    tokenizer_path: str | Path | None,
    *,
    prompts: list[str] | None = None,
    max_new_tokens: int = 32,
    top_k: int = 40,
    batch_size: int = 8,
    device: str = "auto",
    seed: int = 1,
) -> dict[str, Any]:
    """Validation loss/perplexity over the whole ``val`` split, eval tokens/s, greedy and top-k samples."""
    dev = (
        "cuda" if device == "auto" and torch.cuda.is_available() else ("cpu" if device == "auto" else device)
    )
    model, doc = load_model(checkpoint, dev)
    manifest = read_manifest(data_dir)
    spec = TokenSpec.from_manifest(manifest)
    seq_len = int(doc.get("data", {}).get("seq_len") or manifest["seq_len"])
    objective = "clm" if model.config.causal else "mlm"
    result: dict[str, Any] = {"step": doc.get("step"), "objective": objective, "params": model.num_params()}
    val = manifest["splits"].get("val") or {}
    if int(val.get("sequences", 0)) > 0:
        ds = TokenDataset(data_dir, "val", batch_size=batch_size, shuffle=False)
        start = time.perf_counter()
        with torch.no_grad():
            metrics = evaluate_loss(model, ds, objective=objective, seq_len=seq_len, spec=spec, device=dev)
        elapsed = time.perf_counter() - start
        ds.close()
        result.update(
            val_loss=metrics["loss"],
            val_ppl=metrics["ppl"],
            val_tokens=metrics["tokens"],
            eval_tokens_per_s=metrics["tokens"] / elapsed if elapsed > 0 else None,
        )
    else:
        result.update(val_loss=None, val_ppl=None, val_tokens=0, eval_tokens_per_s=None)
    samples = []
    if objective == "clm" and tokenizer_path:
        from pipelines.tokens.bpe import load_tokenizer

        tok = load_tokenizer(tokenizer_path)
        gen = torch.Generator().manual_seed(seed)
        for prompt in prompts or DEFAULT_PROMPTS:
            ids = torch.tensor(tok.encode(prompt).ids or [spec.eot_id or 0], dtype=torch.long)
            greedy = generate(model, ids, max_new_tokens, temperature=0)
            sampled = generate(model, ids, max_new_tokens, temperature=0.8, top_k=top_k, generator=gen)
            samples.append(
                {
                    "prompt": prompt,
                    "greedy": tok.decode(greedy[len(ids) :].tolist()),
                    "top_k": tok.decode(sampled[len(ids) :].tolist()),
                }
            )
    result["samples"] = samples
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--checkpoint", required=True, help="checkpoint or run directory")
    ap.add_argument("--data", required=True, help="token dataset directory (manifest.json)")
    ap.add_argument("--tokenizer", help="tokenizer.json for decoding samples")
    ap.add_argument("--out", help="where to write the JSON result")
    ap.add_argument("--device", default="auto")
    args = ap.parse_args(argv)
    try:
        with open_progress() as progress:
            progress.log(f"evaluating {args.checkpoint} on {args.data}")
            result = evaluate_run(args.checkpoint, args.data, args.tokenizer, device=args.device)
            progress.log(_result_line(result))
            if args.out:
                Path(args.out).write_text(json.dumps(result, indent=1, ensure_ascii=False), encoding="utf-8")
            progress.report(EVAL_RESULT, result)
    except (FileNotFoundError, TokenDataError) as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return 2
    if not launched_by_pipes():  # under Pipes the result went as a message
        print(json.dumps({k: v for k, v in result.items() if k != "samples"}))
    return 0


def _result_line(result: dict[str, Any]) -> str:
    if result["val_loss"] is None:
        return f"eval: step {result['step']} | no validation split"
    rate = result["eval_tokens_per_s"]
    return (
        f"eval: step {result['step']} | val loss {result['val_loss']:.4f} | ppl {result['val_ppl']:.2f} | "
        f"{result['val_tokens']:,} tokens" + (f" | {rate:,.0f} tok/s" if rate else "")
    )


if __name__ == "__main__":
    sys.exit(main())
