"""Score several checkpoints on several token datasets' validation splits in one process.

``python -m training.ablation_eval --run NAME=RUN_DIR ... --data SET=TOKENS_DIR ... --out result.json``

The curation ablation (``training.stages.ablation``) trains one model per corpus and seed and scores
every model on the same evaluation sets; one process for all of them saves an interpreter and torch
start-up per pair. Each pair is :func:`training.run_eval.evaluate_run` without samples (validation
loss and perplexity over the whole split). The result, ``{"results": {NAME: {SET: {"loss", "ppl",
"tokens"}}}}``, is written to ``--out`` and, under Dagster Pipes, reported as the
``corpusforge.eval.result`` message (:mod:`training.progress`).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from training.progress import EVAL_RESULT, launched_by_pipes, open_progress
from training.run_eval import evaluate_run
from training.token_format import TokenDataError


def _pairs(values: list[str], flag: str) -> list[tuple[str, str]]:
    out = []
    for v in values:
        name, sep, path = v.partition("=")
        if not sep or not name or not path:
            raise SystemExit(f"error: {flag} takes NAME=PATH, not {v!r}")
        out.append((name, path))
    return out


def evaluate_all(
    runs: list[tuple[str, str]], sets: list[tuple[str, str]], device: str, log: Any
) -> dict[str, Any]:
    results: dict[str, dict[str, Any]] = {}
    for run, checkpoint in runs:
        for name, data in sets:
            r = evaluate_run(checkpoint, data, None, device=device)
            results.setdefault(run, {})[name] = {
                "loss": r["val_loss"],
                "ppl": r["val_ppl"],
                "tokens": r["val_tokens"],
            }
            ppl = f"{r['val_ppl']:.2f}" if r["val_ppl"] is not None else "n/a"
            log(f"eval: {run} on {name} | ppl {ppl} | {r['val_tokens']:,} tokens")
    return {"results": results}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m training.ablation_eval", description=__doc__)
    ap.add_argument("--run", action="append", required=True, help="NAME=checkpoint or run directory")
    ap.add_argument("--data", action="append", required=True, help="SET=token dataset directory")
    ap.add_argument("--out", help="where to write the JSON result")
    ap.add_argument("--device", default="auto")
    args = ap.parse_args(argv)
    runs, sets = _pairs(args.run, "--run"), _pairs(args.data, "--data")
    try:
        with open_progress() as progress:
            result = evaluate_all(runs, sets, args.device, progress.log)
            if args.out:
                Path(args.out).write_text(json.dumps(result, indent=1), encoding="utf-8")
            progress.report(EVAL_RESULT, result)
    except (FileNotFoundError, TokenDataError) as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return 2
    if not launched_by_pipes():
        print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
