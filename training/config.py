"""Training's configuration contract, torch-free: ``TrainConfig``, the model presets and validation.

``pipelines/config.py`` re-exports these (the ``model`` section of a corpusforge config is a
``TrainConfig``), so the launchpad forms, ``corpusforge config`` and the trainer read one definition.

Config files. ``python -m training.train --config FILE`` reads a YAML/JSON mapping and takes its
``train`` section (the file the ``model`` asset writes: ``{"train": {...}}``) or its ``model``
section (a corpusforge config file); other sections are ignored. Only the training section is
validated here: the training context is checked against the token dataset itself when the run
starts, not against a config default.
"""

from __future__ import annotations

import dataclasses
import os
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Model shapes by preset name; ``training.model.PRESETS`` is this mapping. d_ff follows Llama's
# 8/3 * d_model rounded up to a multiple of 16 or 64, which keeps the SwiGLU MLP's three matrices at
# the parameter count of a GPT-2 4*d_model two-matrix MLP.
PRESETS: dict[str, dict[str, int]] = {
    "tiny": {"n_layer": 2, "n_head": 4, "d_model": 64, "d_ff": 176, "max_seq_len": 256},
    "small": {"n_layer": 8, "n_head": 4, "d_model": 256, "d_ff": 704, "max_seq_len": 512},
    "124m": {"n_layer": 12, "n_head": 12, "d_model": 768, "d_ff": 2048, "max_seq_len": 1024},
}
MODEL_PRESETS: tuple[str, ...] = tuple(PRESETS)
TRACKERS = ("tensorboard", "mlflow")
CONFIG_SECTIONS = ("train", "model")  # the trainer's own file, a corpusforge config file


class TrainConfigError(ValueError):
    """A training setting is unknown, of the wrong type or out of range; the message names it."""


def _f(default: Any, doc: str) -> Any:
    return field(default=default, metadata={"doc": doc})


@dataclass(frozen=True)
class TrainConfig:
    preset: str = _f("tiny", f"Model size preset: {', '.join(MODEL_PRESETS)}.")
    objective: str = _f("clm", "clm (causal LM) or mlm (masked LM).")
    max_steps: int = _f(200, "Optimizer steps.")
    batch_size: int = _f(8, "Sequences per micro-batch per rank.")
    grad_accum: int = _f(1, "Micro-batches per optimizer step.")
    lr: float = _f(3e-3, "Peak learning rate.")
    min_lr_ratio: float = _f(0.1, "Final learning rate as a fraction of the peak.")
    warmup_steps: int = _f(20, "Linear warmup steps.")
    weight_decay: float = _f(0.1, "AdamW weight decay.")
    grad_clip: float = _f(1.0, "Gradient-norm clip (0 = off).")
    eval_every: int = _f(50, "Evaluate validation loss every this many steps.")
    eval_batches: int = _f(20, "Validation batches per evaluation (0 = whole split).")
    checkpoint_every: int = _f(100, "Checkpoint every this many steps.")
    device: str = _f("auto", "auto, cpu or cuda.")
    compile: bool = _f(False, "torch.compile the model (CUDA only).")
    seed: int = _f(1, "Seed of initialisation, data order and sampling.")
    seq_len: int = _f(
        0,
        "Training context; 0 uses the dataset's seq_len. A divisor of it cuts each window into "
        "dataset seq_len / seq_len sequences (a micro-batch then holds that many times batch_size).",
    )
    precision: str = _f("auto", "auto (bf16 autocast on CUDA, fp32 on CPU), bf16 or fp32.")
    mlm_prob: float = _f(0.15, "mlm: fraction of non-special tokens selected for prediction (80/10/10 rule).")
    log_every: int = _f(10, "Log a training line every this many steps.")
    num_workers: int = _f(0, "DataLoader worker processes per rank reading token shards (0 = in process).")
    resume: bool = _f(True, "Continue from out_dir's latest checkpoint when there is one.")
    nproc_per_node: int = _f(1, "Training processes on this machine; > 1 launches torchrun (one per GPU).")
    keep_checkpoints: int = _f(3, "Checkpoints kept on disk (0 = keep all).")
    tracking: str = _f(
        "tensorboard",
        "Experiment trackers, comma-separated (empty: none): tensorboard (event files in the run's "
        "tensorboard/ directory), mlflow (only when mlflow is installed and MLFLOW_TRACKING_URI is set).",
    )
    ablation_seeds: int = _f(
        3, "Curation ablation: training seeds per corpus (seed, seed + 1, ...); mean and spread are reported."
    )


def train_problems(t: TrainConfig) -> list[str]:
    """Everything wrong with a training config, as ``field must ...`` phrases (empty when valid)."""
    problems = []
    if t.objective not in ("clm", "mlm"):
        problems.append(f"objective must be clm or mlm, not {t.objective!r}")
    if t.precision not in ("auto", "bf16", "fp32"):
        problems.append(f"precision must be auto, bf16 or fp32, not {t.precision!r}")
    if t.preset not in MODEL_PRESETS:
        problems.append(f"preset must be one of {', '.join(MODEL_PRESETS)}, not {t.preset!r}")
    if t.device not in ("auto", "cpu", "cuda"):
        problems.append(f"device must be auto, cpu or cuda, not {t.device!r}")
    unknown = [x for x in trackers(t) if x not in TRACKERS]
    if unknown:
        problems.append(
            f"tracking must list {' and/or '.join(TRACKERS)}, not {', '.join(map(repr, unknown))}"
        )
    for name in ("max_steps", "batch_size", "grad_accum", "log_every", "nproc_per_node", "ablation_seeds"):
        if getattr(t, name) < 1:
            problems.append(f"{name} must be >= 1")
    for name in (
        "warmup_steps",
        "eval_every",
        "eval_batches",
        "checkpoint_every",
        "num_workers",
        "seq_len",
        "keep_checkpoints",
    ):
        if getattr(t, name) < 0:
            problems.append(f"{name} must be >= 0")
    if not t.lr > 0:
        problems.append("lr must be > 0")
    if t.weight_decay < 0 or t.grad_clip < 0:
        problems.append("weight_decay and grad_clip must be >= 0")
    if not 0.0 <= t.min_lr_ratio <= 1.0:
        problems.append("min_lr_ratio must be within [0, 1]")
    if not 0.0 < t.mlm_prob < 1.0:
        problems.append("mlm_prob must be within (0, 1)")
    return problems


def trackers(t: TrainConfig) -> list[str]:
    """The experiment trackers ``t.tracking`` names (lower case, in order, without repeats)."""
    out: list[str] = []
    for item in t.tracking.replace(" ", ",").split(","):
        if (name := item.strip().lower()) and name not in out:
            out.append(name)
    return out


def _typed(value: Any, tp: Any, key: str) -> Any:
    if tp is bool and isinstance(value, bool):
        return value
    if tp is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if tp is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if tp is str and isinstance(value, str):
        return value
    raise TrainConfigError(f"{key}: expected {tp.__name__}, got {value!r}")


def make_train_config(values: Mapping[str, Any] | None = None, *, where: str = "train") -> TrainConfig:
    """A validated ``TrainConfig`` from a mapping of field values (missing fields keep defaults)."""
    values = dict(values or {})
    hints = typing.get_type_hints(TrainConfig)
    names = [f.name for f in dataclasses.fields(TrainConfig)]
    unknown = sorted(set(values) - set(names))
    if unknown:
        raise TrainConfigError(
            f"unknown key(s) {', '.join(f'{where}.{k}' for k in unknown)}; valid keys: {', '.join(names)}"
        )
    cfg = TrainConfig(**{k: _typed(v, hints[k], f"{where}.{k}") for k, v in values.items()})
    problems = train_problems(cfg)
    if problems:
        raise TrainConfigError("; ".join(f"{where}.{p}" for p in problems))
    return cfg


def read_mapping_file(path: str | os.PathLike, error: type[Exception] = ValueError) -> dict[str, Any]:
    """Parse a YAML or JSON file holding a mapping ({} when empty); ``error`` names the file."""
    import yaml

    p = Path(path)
    if not p.is_file():
        raise error(f"config file {str(p)!r} does not exist; pass an existing YAML/JSON file")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise error(f"config file {str(p)!r} is not valid YAML/JSON: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        raise error(f"config file {str(p)!r} must hold a mapping at the top level")
    return dict(data)


def read_train_section(path: str | os.PathLike) -> dict[str, Any]:
    """The training section (``train`` or ``model``) of a YAML/JSON config file; {} when it has none."""
    p = Path(path)
    data = read_mapping_file(p, TrainConfigError)
    found = [s for s in CONFIG_SECTIONS if s in data]
    if len(found) > 1:
        raise TrainConfigError(f"config file {str(p)!r} has both 'train' and 'model' sections; keep one")
    section = data[found[0]] if found else {}
    if not isinstance(section, Mapping):
        raise TrainConfigError(f"config file {str(p)!r}: section {found[0]!r} must be a mapping")
    return dict(section)


def load_train_config(
    path: str | os.PathLike | None = None, overrides: Mapping[str, Any] | None = None
) -> TrainConfig:
    """Defaults, then the training section of the file at ``path``, then ``overrides``; validated."""
    values = read_train_section(path) if path else {}
    return make_train_config({**values, **(overrides or {})})
