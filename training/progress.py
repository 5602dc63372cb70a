"""Progress of ``python -m training.train`` / ``python -m training.run_eval``: printed, or streamed to
Dagster when the process was launched through Dagster Pipes.

Without Pipes (a shell, plain ``torchrun`` on a cluster) every log line is printed to stdout as
before; ``dagster-pipes`` is imported lazily and need not be installed. When the Pipes bootstrap
variables are set (``DAGSTER_PIPES_CONTEXT`` and ``DAGSTER_PIPES_MESSAGES``, as
``dagster.PipesSubprocessClient`` sets them, also through ``torchrun``), rank 0 (``RANK`` unset or
0) opens Pipes once; other ranks stay silent, as they are today.

What the asset receives (``invocation = PipesSubprocessClient().run(context=..., command=[...])``):

* **Log lines** -- each line the run prints is sent as ``pipes.log.info(line)`` instead of being
  printed, so it appears in the Dagster event log of the step while the process runs (nothing to
  read back). Training lines:

  - ``model <preset>: <N> params, seq_len <T>, <K> tokens/step on <W> x <device>; <mfu>``, where
    ``<mfu>`` is ``MFU against a peak of <P> TFLOP/s`` or, without a known peak (CPU), ``no MFU: no
    known dense bf16 peak for cpu (set CORPUSFORGE_PEAK_FLOPS=<FLOP/s> to compute one)``;
  - ``step <s>/<max_steps> | loss <x.xxxx> | lr <x.xxe-xx>[ | <n> tok/s][ | mfu <x.x>%][ | eta <d>]``
    (tok/s from the second step on; mfu only where a peak is known; eta until this run's last step);
  - ``eval step <s> | val loss <x.xxxx> | ppl <x.xx>``, ``saved checkpoint <path>``,
    ``resumed from <checkpoint> at step <s>``, ``resume is off: removing ...``.

  Evaluation: ``evaluating <checkpoint> on <data>``, then ``eval: step <s> | val loss <x.xxxx> |
  ppl <x.xx> | <n> tokens[ | <r> tok/s]`` (or ``eval: step <s> | no validation split``). The final
  one-line JSON (summary without curves / result without samples) is still printed to stdout.

* **One custom message at the end** of a successful run, read with
  ``invocation.get_custom_messages()``, or ``read_report(invocation.get_custom_messages())`` which
  returns the body (``SUMMARY`` / ``RESULT`` below) of the last report of either kind::

      {"kind": "corpusforge.train.summary", "schema": 1, "summary": SUMMARY}   # training.train
      {"kind": "corpusforge.eval.result", "schema": 1, "result": RESULT}       # training.run_eval

  ``SUMMARY`` is exactly ``summary.json`` (still written to ``--out``):
  ``preset``, ``objective`` (str); ``params``, ``non_embedding_params``, ``seq_len``,
  ``batch_size``, ``grad_accum``, ``world_size``, ``start_step``, ``steps``, ``tokens_per_step``,
  ``tokens_seen``, ``peak_memory_bytes`` (int); ``model_config`` (dict: vocab_size, n_layer,
  n_head, d_model, d_ff, max_seq_len, causal, rope_theta, norm_eps, init_std); ``device``
  (``"cpu"``/``"cuda"``), ``gpu_name`` (str | null), ``precision`` (``"bf16"``/``"fp32"``),
  ``compile`` (bool), ``resumed_from`` (str | null); ``final_train_loss``, ``val_loss``,
  ``val_ppl``, ``tokens_per_s``, ``tokens_per_s_per_device``, ``peak_flops``, ``mfu``,
  ``data_time_frac`` (float | null), ``flops_per_token`` (float); ``mfu_note`` (str | null: why
  ``mfu`` is null); ``loss_curve`` ``{"step": [int], "loss": [float], "lr": [float]}``;
  ``val_curve`` ``{"step": [int], "loss": [float], "ppl": [float]}``; ``samples``
  ``[{"prompt": [int], "completion": [int]}]``; ``checkpoint`` (str | null).

  ``RESULT`` is the ``--out`` JSON of ``run_eval``: ``step``, ``params``, ``val_tokens`` (int);
  ``objective`` (str); ``val_loss``, ``val_ppl``, ``eval_tokens_per_s`` (float | null);
  ``samples`` ``[{"prompt": str, "greedy": str, "top_k": str}]``.

* **Failure**: the exception closes Pipes with its message and traceback (an engine event
  ``[pipes] external process pipes closed with exception`` whose ``engine_event_data.error.message``
  is the message), the process exits non-zero -- 2 with one ``error: <message>`` line on stderr for
  a configuration or data problem (bad setting, ``seq_len`` not dividing the dataset's, an ``--out``
  holding another model's checkpoints, a missing or corrupt token dataset), 1 with a traceback
  otherwise -- so ``run`` raises ``DagsterPipesExecutionError``; no custom message is sent.

A custom message rather than ``report_asset_materialization``: it carries the JSON as is, works
for ops and multi-assets, may be sent by several processes of one step (the ablation trains twice)
and leaves the asset free to build its own materialization.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

TRAIN_SUMMARY = "corpusforge.train.summary"
EVAL_RESULT = "corpusforge.eval.result"
SCHEMA = 1
PIPES_ENV = ("DAGSTER_PIPES_CONTEXT", "DAGSTER_PIPES_MESSAGES")
_BODY = {TRAIN_SUMMARY: "summary", EVAL_RESULT: "result"}


def launched_by_pipes() -> bool:
    """Whether Dagster Pipes started this process (its bootstrap variables are set)."""
    return all(os.environ.get(name) for name in PIPES_ENV)


def is_rank_zero() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


class Progress:
    """Where a process's progress goes: stdout, or the Pipes context ``pipes`` when given."""

    def __init__(self, pipes: Any = None) -> None:
        self.pipes = pipes

    @property
    def streaming(self) -> bool:
        return self.pipes is not None

    def log(self, line: str) -> None:
        """One progress line: to the Dagster event log under Pipes, else printed."""
        if self.pipes is not None:
            self.pipes.log.info(line)
        else:
            print(line, flush=True)

    def report(self, kind: str, body: Mapping[str, Any]) -> None:
        """The run's final document as a custom message (nothing without Pipes: it is in ``--out``)."""
        if self.pipes is not None:
            self.pipes.report_custom_message({"kind": kind, "schema": SCHEMA, _BODY[kind]: dict(body)})


@contextlib.contextmanager
def open_progress() -> Iterator[Progress]:
    """A :class:`Progress` for this process: Pipes on rank 0 of a Pipes launch, stdout otherwise.

    An exception raised inside closes Pipes with that exception (Dagster shows it), then propagates.
    """
    if not (launched_by_pipes() and is_rank_zero()):
        yield Progress()
        return
    try:
        import dagster_pipes
    except ImportError:
        print("launched by Dagster Pipes, but dagster-pipes is not installed: printing", file=sys.stderr)
        yield Progress()
        return
    with dagster_pipes.open_dagster_pipes() as pipes:
        yield Progress(pipes)


def read_report(messages: Sequence[Any], kind: str | None = None) -> dict[str, Any]:
    """The body (summary or result dict) of the last report of ``kind`` (either kind when None) among
    a Pipes invocation's custom messages; ``KeyError`` when the process sent none."""
    for message in reversed(messages):
        if isinstance(message, Mapping) and message.get("kind") in ((kind,) if kind else tuple(_BODY)):
            return dict(message[_BODY[message["kind"]]])
    raise KeyError(f"the process reported no {kind or ' or '.join(_BODY)!r} message")
