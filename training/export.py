"""Export a checkpoint as a Hugging Face ``LlamaForCausalLM`` directory (without importing transformers).

Writes ``config.json``, ``generation_config.json``, ``model.safetensors`` and the tokenizer
(``tokenizer.json``, ``tokenizer_config.json`` for ``PreTrainedTokenizerFast``,
``special_tokens_map.json``). The weights are renamed (``model.`` prefix) and the fused
``qkv_proj`` / ``gate_up_proj`` matrices split into ``q_proj``/``k_proj``/``v_proj`` and
``gate_proj``/``up_proj``; rotary embeddings already use HF's ``rotate_half`` layout, so logits
match. The output head is tied to the embedding (``tie_word_embeddings``). Only causal (clm)
checkpoints can be exported: an mlm model attends bidirectionally, which Llama cannot express.

Without an explicit tokenizer the checkpoint's recorded one is used (:func:`recorded_tokenizer`):
found from any working directory, also when the data directory was moved.
:func:`export_model_version` exports a committed ``model`` stage version (``corpusforge export
model``) to a local folder or an object store, atomically, with a model card.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from training.checkpoint import latest_checkpoint, read_state, strip_prefixes
from training.model import ModelConfig

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def to_hf_llama(weights: dict[str, torch.Tensor], cfg: ModelConfig) -> dict[str, torch.Tensor]:
    """Our parameter names and fused layout -> ``LlamaForCausalLM`` state dict (tied head omitted)."""
    d, ff = cfg.d_model, cfg.d_ff
    out: dict[str, torch.Tensor] = {}
    for name, t in strip_prefixes(weights).items():
        if name.endswith("self_attn.qkv_proj.weight"):
            base = name[: -len("qkv_proj.weight")]
            for part, w in zip(("q_proj", "k_proj", "v_proj"), t.split(d, dim=0), strict=True):
                out[f"model.{base}{part}.weight"] = w
        elif name.endswith("mlp.gate_up_proj.weight"):
            base = name[: -len("gate_up_proj.weight")]
            gate, up = t.split(ff, dim=0)
            out[f"model.{base}gate_proj.weight"] = gate
            out[f"model.{base}up_proj.weight"] = up
        else:
            out[f"model.{name}"] = t
    return {k: v.contiguous() for k, v in out.items()}


def hf_llama_config(cfg: ModelConfig, data: dict[str, Any], dtype: str) -> dict[str, Any]:
    eot = data.get("eot_id")
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": cfg.vocab_size,
        "hidden_size": cfg.d_model,
        "intermediate_size": cfg.d_ff,
        "num_hidden_layers": cfg.n_layer,
        "num_attention_heads": cfg.n_head,
        "num_key_value_heads": cfg.n_head,
        "head_dim": cfg.head_dim,
        "hidden_act": "silu",
        "max_position_embeddings": cfg.max_seq_len,
        "initializer_range": cfg.init_std,
        "rms_norm_eps": cfg.norm_eps,
        "rope_theta": cfg.rope_theta,  # transformers < 5
        "rope_parameters": {"rope_type": "default", "rope_theta": cfg.rope_theta},  # transformers >= 5
        "attention_bias": False,
        "attention_dropout": 0.0,
        "mlp_bias": False,
        "tie_word_embeddings": True,
        "use_cache": True,
        "bos_token_id": eot,
        "eos_token_id": eot,
        "pad_token_id": data.get("pad_id"),
        "torch_dtype": dtype,
    }


def _token_strings(tokenizer: dict[str, Any]) -> dict[int, str]:
    strings = {int(t["id"]): t["content"] for t in tokenizer.get("added_tokens", [])}
    vocab = (tokenizer.get("model") or {}).get("vocab")
    if isinstance(vocab, dict):
        for token, idx in vocab.items():
            strings.setdefault(int(idx), token)
    return strings


def recorded_tokenizer(checkpoint: str | os.PathLike, data: Mapping[str, Any]) -> Path:
    """The tokenizer file a checkpoint's ``data`` section names, as a local path.

    An absolute path is used as it is when it exists. A relative one (older checkpoints stored the
    path as the token dataset's manifest had it, e.g. ``data/tokenizer/<version>/tokenizer.json``
    relative to the directory training ran in), or an absolute one whose data directory has moved,
    is looked up under the checkpoint's ancestors and the dataset's directory, dropping leading
    components until a file with the recorded sha256 (when recorded) is found. An object-store URI
    is downloaded to a temporary file.
    """
    recorded = data.get("tokenizer_path")
    if not recorded:
        raise ValueError(f"{checkpoint}: the checkpoint records no tokenizer path; pass tokenizer_json")
    expected = data.get("tokenizer_sha256")
    if "://" in str(recorded):
        from pipelines import fs

        local = Path(tempfile.mkdtemp(prefix="corpusforge-tokenizer-")) / "tokenizer.json"
        local.write_bytes(fs.path(recorded).read_bytes())
        return local
    path = Path(recorded)
    if path.is_absolute() and path.is_file():
        return path
    bases = [*Path(checkpoint).resolve().parents]
    if data.get("path"):
        bases += [*Path(str(data["path"])).parents]
    parts = path.parts[1:] if path.is_absolute() else path.parts
    for k in range(len(parts)):
        tail = Path(*parts[k:])
        for base in bases:
            candidate = base / tail
            if candidate.is_file() and (
                not expected or hashlib.sha256(candidate.read_bytes()).hexdigest() == expected
            ):
                return candidate
    raise FileNotFoundError(
        f"{checkpoint}: the recorded tokenizer {recorded!r} is not found from {Path.cwd()} nor under the "
        "checkpoint's or the dataset's directories; pass tokenizer_json"
    )


def export_hf_llama(
    checkpoint_dir: str | os.PathLike,
    tokenizer_json: str | os.PathLike | None,
    out_dir: str | os.PathLike,
    *,
    dtype: str = "float32",
    check_tokenizer: bool = True,
) -> Path:
    """Write checkpoint ``checkpoint_dir`` (or a run directory's latest) as a HF Llama model.

    ``tokenizer_json`` None uses the tokenizer path recorded in the token dataset's manifest.
    With ``check_tokenizer`` the sha256 of ``tokenizer_json``'s bytes must equal the
    ``tokenizer_sha256`` the token dataset manifest recorded (when it recorded one).
    """
    ckpt = Path(checkpoint_dir)
    if not (ckpt / "state.json").is_file():
        latest = latest_checkpoint(ckpt)
        if latest is None:
            raise FileNotFoundError(f"{ckpt} is neither a checkpoint nor a run directory with checkpoints")
        ckpt = latest
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {sorted(DTYPES)}, not {dtype!r}")
    doc = read_state(ckpt)
    cfg = ModelConfig.from_dict(doc["model_config"])
    if not cfg.causal:
        raise ValueError(f"{ckpt}: an mlm (bidirectional) model cannot be exported as LlamaForCausalLM")
    data = doc.get("data", {})
    if tokenizer_json is None:
        tokenizer_json = recorded_tokenizer(ckpt, data)

    tok_bytes = Path(tokenizer_json).read_bytes()
    expected = data.get("tokenizer_sha256")
    if check_tokenizer and expected and hashlib.sha256(tok_bytes).hexdigest() != expected:
        raise ValueError(
            f"{tokenizer_json}: sha256 differs from the tokenizer the training data was encoded with "
            f"({expected}); pass check_tokenizer=False only if the hash convention differs"
        )
    tokenizer = json.loads(tok_bytes)
    strings = _token_strings(tokenizer)
    if strings and max(strings) >= cfg.vocab_size:
        raise ValueError(
            f"{tokenizer_json}: token id {max(strings)} does not fit the model's vocab of {cfg.vocab_size}"
        )

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    weights = to_hf_llama(load_file(str(ckpt / "model.safetensors")), cfg)
    weights = {k: v.to(DTYPES[dtype]) for k, v in weights.items()}
    save_file(weights, str(out / "model.safetensors"), metadata={"format": "pt"})
    config = hf_llama_config(cfg, data, dtype)
    (out / "config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    generation = {k: config[k] for k in ("bos_token_id", "eos_token_id", "pad_token_id")}
    (out / "generation_config.json").write_text(json.dumps(generation, indent=2), encoding="utf-8")

    shutil.copyfile(tokenizer_json, out / "tokenizer.json")
    specials = {}
    for key, id_key in (
        ("eos_token", "eot_id"),
        ("bos_token", "eot_id"),
        ("pad_token", "pad_id"),
        ("mask_token", "mask_id"),
    ):
        idx = data.get(id_key)
        if idx is not None and int(idx) in strings:
            specials[key] = strings[int(idx)]
    tok_config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "model_max_length": cfg.max_seq_len,
        "clean_up_tokenization_spaces": False,
        "add_bos_token": False,
        "add_eos_token": False,
        # special-token strings inside text are plain text, as when the token dataset was encoded
        "split_special_tokens": True,
        **specials,
    }
    (out / "tokenizer_config.json").write_text(
        json.dumps(tok_config, indent=2, ensure_ascii=False), encoding="utf-8"
    )
    (out / "special_tokens_map.json").write_text(
        json.dumps(specials, indent=2, ensure_ascii=False), encoding="utf-8"
    )
    return out


def model_card(
    manifest: Mapping[str, Any], *, language: list[str] | None = None, license: str = "other"
) -> str:
    """A short Hugging Face model card (README.md) from a ``model`` stage manifest."""
    import yaml

    s = manifest.get("summary") or {}
    head: dict[str, Any] = {
        "library_name": "transformers",
        "pipeline_tag": "text-generation",
        "language": language or ["und"],
        "license": license,
        **({"license_name": "mixed-see-training-data"} if license == "other" else {}),
        "tags": ["corpusforge", "llama"],
    }

    def num(x: Any) -> str:
        return (
            "n/a"
            if x is None
            else f"{x:.4g}"
            if isinstance(x, float)
            else f"{x:,}"
            if isinstance(x, int)
            else str(x)
        )

    rows = [
        ("architecture", f"LlamaForCausalLM ({s.get('preset')} preset, {num(s.get('params'))} parameters)"),
        ("context", num(s.get("seq_len"))),
        ("training steps", num(s.get("steps"))),
        ("tokens seen", num(s.get("tokens_seen"))),
        ("final training loss", num(s.get("final_train_loss"))),
        ("validation loss / perplexity", f"{num(s.get('val_loss'))} / {num(s.get('val_ppl'))}"),
        (
            "device",
            f"{s.get('device')} {s.get('gpu_name') or ''} x{s.get('world_size')} {s.get('precision')}",
        ),
    ]
    upstream = ", ".join(f"{k} `{v}`" for k, v in (manifest.get("upstream") or {}).items())
    return "\n".join(
        [
            "---",
            yaml.safe_dump(head, sort_keys=False).rstrip(),
            "---",
            "",
            f"# corpusforge model `{manifest.get('version')}`",
            "",
            "A decoder-only Transformer pretrained by corpusforge, exported as `LlamaForCausalLM` with its "
            "byte-level BPE tokenizer (`AutoModelForCausalLM.from_pretrained` / `AutoTokenizer.from_pretrained`). "
            "Special-token strings inside text stay text, as when the training data was encoded.",
            "",
            "| | |",
            "|---|---|",
            *(f"| {k} | {v} |" for k, v in rows),
            "",
            f"Trained on: {upstream}. See the dataset card of the token dataset (`corpusforge card --stage "
            "tokens`) for the data.",
            "",
        ]
    )


def export_model_version(
    version: Any,
    out: str | os.PathLike,
    *,
    dtype: str = "float32",
    card: str | None = None,
    overwrite: bool = False,
) -> list[str]:
    """Export a committed ``model`` stage version (a ``pipelines.storage.StageVersion``, local or on
    an object store) as a Hugging Face folder at ``out`` (local or object store), atomically.

    The tokenizer is the one the model stage recorded (``tokenizer_path`` of its manifest), else the
    checkpoint's. ``card`` (markdown) is written as ``README.md``. Returns the files written.
    """
    from pipelines import fs
    from pipelines.exports import CARD_FILE, staged_output
    from training.stages import local_copy

    manifest = version.manifest()
    run_dir = local_copy(version)
    with tempfile.TemporaryDirectory(prefix="corpusforge-export-") as tmp:
        tokenizer: Path | None = None
        if recorded := manifest.get("tokenizer_path"):
            source = fs.path(recorded)
            if source.is_file():
                tokenizer = Path(tmp) / "tokenizer.json"
                tokenizer.write_bytes(source.read_bytes())
        with staged_output(out, overwrite=overwrite) as root:
            local = fs.local_path(root)
            target = local if local is not None else Path(tmp) / "hf"
            export_hf_llama(run_dir, tokenizer, target, dtype=dtype)
            if card is not None:
                (target / CARD_FILE).write_text(card, encoding="utf-8")
            files = sorted(p.name for p in target.iterdir() if p.is_file())
            if local is None:  # an object store: every file once under its final name, the card last
                for name in sorted(files, key=lambda n: n == CARD_FILE):
                    with open(target / name, "rb") as src, fs.open_write(root / name) as dst:
                        shutil.copyfileobj(src, dst, 1 << 20)
    return files
