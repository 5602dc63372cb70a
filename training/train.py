"""Command line: ``python -m training.train --data DIR --out DIR [--preset tiny] [--max-steps N] ...``.

Works under ``torchrun --nproc_per_node=N -m training.train ...`` (DDP). Every ``TrainConfig``
field is an option (``--batch-size``, ``--no-compile``, ...); ``--config FILE`` reads a corpusforge
YAML/JSON config first and uses its ``train`` section, options override it.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import typing
from collections.abc import Sequence

from pipelines.config import TrainConfig, load_config
from training.trainer import train

CURVE_KEYS = ("loss_curve", "val_curve", "samples", "model_config")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m training.train", description="Pretrain a corpusforge model.")
    p.add_argument("--data", required=True, help="Token dataset directory (with manifest.json).")
    p.add_argument("--out", required=True, help="Run directory: checkpoints, train_log.jsonl, summary.json.")
    p.add_argument("--config", help="corpusforge YAML/JSON config whose train section is the base.")
    p.add_argument(
        "--stop-step", type=int, help="Stop (and checkpoint) after this step, keeping the schedule."
    )
    hints = typing.get_type_hints(TrainConfig)
    for f in dataclasses.fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        doc = f.metadata.get("doc", "")
        if hints[f.name] is bool:
            p.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=None, help=doc)
        else:
            p.add_argument(
                flag, dest=f.name, type=hints[f.name], default=None, help=f"{doc} (default {f.default})"
            )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    overrides = {
        f.name: getattr(args, f.name)
        for f in dataclasses.fields(TrainConfig)
        if getattr(args, f.name) is not None
    }
    cfg = load_config(args.config, overrides={"train": overrides}).train
    summary = train(cfg, args.data, args.out, stop_step=args.stop_step)
    if int(os.environ.get("RANK", "0")) == 0:
        brief = {k: v for k, v in summary.items() if k not in CURVE_KEYS}
        print(json.dumps(brief), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
