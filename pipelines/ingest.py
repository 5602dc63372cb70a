"""Ingestion: raw files -> ``raw`` documents + a quarantine ledger.

Formats: JSONL (``.jsonl``/``.json``/``.ndjson``), plain text (``.txt``/``.text``/``.md``; one document per
file, or documents split by a separator) and Parquet, each optionally ``.gz`` or ``.zst`` compressed.
Uncompressed JSONL is read in byte ranges so one large file spreads over workers.

Every record becomes either a document or a ledger row with a reason:
``invalid-utf8``, ``malformed-json``, ``missing-text-field``, ``empty-text``, ``record-too-large``,
``unreadable-file``, ``unsupported-format``, ``hidden-file`` (dot files and files in dot directories are
recorded, not read). Nothing is dropped silently and one bad record or file never stops the run.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import io
import json
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import apache_beam as beam
import pyarrow.parquet as pq

from pipelines import fs, schemas, storage
from pipelines.beam_stage import SplitWork, counter, for_input_size, process_splits, run_stage
from pipelines.config import CorpusforgeConfig, IngestConfig, fingerprint, to_dict
from pipelines.stage import StageJob, StageResult

JSONL_EXT = {".jsonl", ".json", ".ndjson"}
TXT_EXT = {".txt", ".text", ".md"}
PARQUET_EXT = {".parquet"}
COMPRESSION_EXT = {".gz": "gzip", ".zst": "zstd", ".zstd": "zstd"}
_CHUNK = 1 << 20


class InputError(FileNotFoundError):
    """The configured input path is missing or holds no readable files."""


@dataclass(frozen=True)
class Split:
    """A unit of ingestion work: a whole file, or a byte range of an uncompressed JSONL file."""

    key: str
    path: str  # absolute
    source: str  # path relative to the input root (stable across machines)
    fmt: str  # jsonl | txt | parquet | unsupported | hidden
    compression: str  # "" | gzip | zstd
    start: int = 0
    end: int = -1  # -1 = to the end of the file
    size: int = 0  # from the listing (0 when it cannot be stat'ed)
    stamp: str = ""  # change stamp from the listing: mtime_ns locally, ETag on object stores


def detect_format(path: str) -> tuple[str, str]:
    """(format, compression) from the file name."""
    p = Path(path.lower())
    compression = COMPRESSION_EXT.get(p.suffix, "")
    if compression:
        p = p.with_suffix("")
    ext = p.suffix
    if ext in JSONL_EXT:
        return "jsonl", compression
    if ext in TXT_EXT:
        return "txt", compression
    if ext in PARQUET_EXT and not compression:
        return "parquet", ""
    return "unsupported", compression


def list_inputs(input_path: str | os.PathLike, pattern: str = "**/*") -> tuple[Any, list[fs.FileInfo]]:
    """(root, files) for an input file or directory, local or on an object store; fails fast when
    there is nothing to read. Sizes and change stamps come from the same listing."""
    fs.check_access(str(input_path), write=False, what="input")
    p = fs.path(input_path)
    if not p.exists():
        raise InputError(f"input path {fs.uri(p)!r} does not exist; set paths.input to a file or directory")
    if p.is_file():
        return p.parent, list(fs.list_files(p.parent, p.name))
    # Broken local symlinks are kept (they become ``unreadable-file`` rows); directories are not files.
    files = list(fs.list_files(p, pattern))
    if not files:
        raise InputError(f"input directory {fs.uri(p)!r} holds no files matching {pattern!r}")
    return p, files


def _relative(f: Any, root: Any) -> str:
    return f.relative_to(root).as_posix() if fs.local_path(f) is not None else str(f)[len(str(root)) + 1 :]


def _inside(f: Any, roots: list[str]) -> bool:
    local = fs.local_path(f)
    if local is not None:
        return any(local.resolve().is_relative_to(r) for r in roots if not fs.is_remote(r))
    text = str(f)
    return any(text.startswith(r.rstrip("/") + "/") for r in roots if fs.is_remote(r))


def plan_splits(
    input_path: str | os.PathLike, cfg: IngestConfig, exclude: tuple[str | os.PathLike, ...] = ()
) -> list[Split]:
    """All ingestion splits, in a deterministic order; files under ``exclude`` (the data directory
    and ``$DAGSTER_HOME`` when they lie inside the input) are this system's own output, not input."""
    root, files = list_inputs(input_path, cfg.glob)
    skip = [fs.resolve(p) for p in exclude if p]
    files = [f for f in files if not _inside(f.path, skip)]
    from_dir = fs.path(input_path).is_dir()
    splits: list[Split] = []
    for info in files:
        f = info.path
        fmt, comp = detect_format(f.name)
        if fmt not in cfg.formats and fmt != "unsupported":
            fmt = "unsupported"
        source = _relative(f, root)
        if from_dir and any(part.startswith(".") for part in source.split("/")):
            fmt = "hidden"
        local = fs.local_path(f)
        location = str(local.resolve()) if local is not None else fs.uri(f)
        size, stamp = info.size, info.stamp
        if fmt == "jsonl" and not comp and size > cfg.split_bytes:
            for start in range(0, size, cfg.split_bytes):
                end = min(size, start + cfg.split_bytes)
                splits.append(Split("", location, source, fmt, comp, start, end, size, stamp))
        else:
            splits.append(Split("", location, source, fmt, comp, size=size, stamp=stamp))
    return [dataclasses.replace(s, key=f"{i:05d}") for i, s in enumerate(splits)]


def document_id(source: str, offset: int, text: str) -> str:
    """Stable id from the source path, the record offset and the text."""
    h = hashlib.blake2b(digest_size=16)
    h.update(source.encode())
    h.update(b"\0%d\0" % offset)
    h.update(text.encode("utf-8", "surrogatepass"))
    return h.hexdigest()


def _open_binary(split: Split) -> Any:
    if split.compression == "gzip":
        return gzip.GzipFile(fileobj=fs.open_read(split.path), mode="rb")
    if split.compression == "zstd":
        import zstandard

        return io.BufferedReader(
            zstandard.ZstdDecompressor().stream_reader(fs.open_read(split.path), closefd=True)
        )
    return fs.open_read(split.path)


def _quarantine(
    split: Split, reason: str, offset: int, detail: str, raw: bytes | str = b"", nbytes: int | None = None
) -> dict:
    text = raw if isinstance(raw, str) else raw[: schemas.SAMPLE_CHARS * 4].decode("utf-8", "replace")
    return schemas.ledger_row(
        reason=reason,
        source=split.source,
        offset=offset,
        detail=detail,
        text=text,
        nbytes=nbytes if nbytes is not None else len(raw) if isinstance(raw, bytes) else None,
    )


def _make_document(
    split: Split, offset: int, text: str, meta: dict[str, Any], cfg: IngestConfig
) -> tuple[str, dict]:
    if len(text.strip()) < cfg.min_text_chars:
        return "ledger", _quarantine(
            split,
            "empty-text",
            offset,
            f"text has fewer than {cfg.min_text_chars} non-space characters",
            text,
        )
    meta_json = json.dumps(meta, ensure_ascii=False, sort_keys=True, default=str) if meta else None
    try:
        if meta_json is not None:
            meta_json.encode("utf-8")
    except UnicodeEncodeError as exc:  # a lone surrogate from a JSON escape in a non-text field
        return "ledger", _quarantine(
            split,
            "invalid-utf8",
            offset,
            f"a metadata field holds an unpaired surrogate ({exc.reason})",
            text,
        )
    doc = {
        "id": document_id(split.source, offset, text),
        "text": text,
        "source": split.source,
        "offset": offset,
        "meta": meta_json,
        "tags": [],
    }
    return "documents", doc


def _decode(split: Split, raw: bytes, offset: int) -> tuple[str | None, dict | None]:
    try:
        return raw.decode("utf-8"), None
    except UnicodeDecodeError as exc:
        detail = f"invalid UTF-8 at byte {offset + exc.start}: {exc.reason}"
        return None, _quarantine(split, "invalid-utf8", offset, detail, raw)


def _read_lines(fh: io.BufferedIOBase, limit: int) -> Iterator[tuple[int, bytes, bool]]:
    """(relative offset, line without newline, too_long) with bounded memory for over-long lines."""
    pos = 0
    while True:
        line = fh.readline(limit + 1)
        if not line:
            return
        start = pos
        pos += len(line)
        if len(line) > limit and not line.endswith(b"\n"):
            head = line
            while True:  # skip the rest of an over-long line without holding it
                more = fh.readline(_CHUNK)
                pos += len(more)
                if not more or more.endswith(b"\n"):
                    break
            yield start, head, True
            continue
        yield start, line.rstrip(b"\r\n"), False


def _jsonl_records(split: Split, cfg: IngestConfig) -> Iterator[tuple[str, dict]]:
    with _open_binary(split) as fh:
        base = 0
        if split.start > 0:
            fh.seek(split.start - 1)
            # A range starting mid-line belongs to the previous range: skip to the next line start.
            if fh.read(1) != b"\n":
                while (more := fh.readline(_CHUNK)) and not more.endswith(b"\n"):
                    pass  # bounded memory even when the range starts inside a huge line
            base = fh.tell()
        for rel, line, too_long in _read_lines(fh, cfg.max_record_bytes):
            offset = base + rel
            if split.end >= 0 and offset >= split.end:
                return
            if too_long:
                yield (
                    "ledger",
                    _quarantine(
                        split,
                        "record-too-large",
                        offset,
                        f"JSON line longer than {cfg.max_record_bytes} bytes",
                        line,
                        nbytes=len(line),
                    ),
                )
                continue
            if offset == 0 and line.startswith(b"\xef\xbb\xbf"):
                line = line[3:]  # a UTF-8 byte-order mark (Windows tools) is not part of the record
            if not line.strip():
                continue  # blank separator lines are not records
            text, bad = _decode(split, line, offset)
            if bad or text is None:
                yield "ledger", bad or {}
                continue
            try:
                record = json.loads(text)
            except json.JSONDecodeError as exc:
                yield (
                    "ledger",
                    _quarantine(
                        split, "malformed-json", offset, f"JSON error: {exc.msg} at column {exc.colno}", line
                    ),
                )
                continue
            yield _from_record(split, offset, record, cfg, line)


def _from_record(
    split: Split, offset: int, record: Any, cfg: IngestConfig, raw: bytes | str
) -> tuple[str, dict]:
    if not isinstance(record, dict):
        return "ledger", _quarantine(
            split, "malformed-json", offset, f"record is a {type(record).__name__}, not an object", raw
        )
    value = record.get(cfg.text_field)
    if value is None:
        return "ledger", _quarantine(split, "missing-text-field", offset, f"no {cfg.text_field!r} field", raw)
    if not isinstance(value, str):
        return "ledger", _quarantine(
            split,
            "missing-text-field",
            offset,
            f"field {cfg.text_field!r} is a {type(value).__name__}, not a string",
            raw,
        )
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError as exc:  # lone surrogates from JSON escapes such as "\ud800"
        return "ledger", _quarantine(
            split,
            "invalid-utf8",
            offset,
            f"text holds an unpaired surrogate at character {exc.start}",
            value.encode("utf-8", "replace"),
        )
    if size > cfg.max_record_bytes:
        return "ledger", _quarantine(
            split,
            "record-too-large",
            offset,
            f"text is {size} bytes, over {cfg.max_record_bytes}",
            value[:1000],
            nbytes=size,
        )
    meta = {k: v for k, v in record.items() if k != cfg.text_field}
    return _make_document(split, offset, value, meta, cfg)


def _txt_records(split: Split, cfg: IngestConfig) -> Iterator[tuple[str, dict]]:
    with _open_binary(split) as fh:
        if not cfg.txt_separator:
            data = fh.read(cfg.max_record_bytes + 1)
            if len(data) > cfg.max_record_bytes:
                size = len(data) + sum(len(b) for b in iter(lambda: fh.read(_CHUNK), b""))
                yield (
                    "ledger",
                    _quarantine(
                        split,
                        "record-too-large",
                        0,
                        f"file is {size} bytes, over {cfg.max_record_bytes}",
                        data,
                        nbytes=size,
                    ),
                )
                return
            yield from _txt_piece(split, 0, data, cfg)
            return
        sep = cfg.txt_separator.encode()
        buf, offset = b"", 0
        skipped = -1  # >= 0 while dropping an oversized document: bytes dropped so far
        for block in iter(lambda: fh.read(_CHUNK), b""):
            buf += block
            pos = 0
            while (i := buf.find(sep, pos)) >= 0:
                if skipped >= 0:  # the oversized document ends here
                    offset += skipped + i - pos + len(sep)
                    skipped = -1
                else:
                    yield from _txt_piece(split, offset, buf[pos:i], cfg)
                    offset += i - pos + len(sep)
                pos = i + len(sep)
            buf = buf[pos:]
            if skipped < 0 and len(buf) > cfg.max_record_bytes:
                yield (
                    "ledger",
                    _quarantine(
                        split,
                        "record-too-large",
                        offset,
                        f"document over {cfg.max_record_bytes} bytes before the next separator",
                        buf,
                        nbytes=len(buf),
                    ),
                )
                skipped = 0
            if skipped >= 0:  # keep only what could be the start of a separator
                drop = len(buf) - (len(sep) - 1)
                if drop > 0:
                    skipped += drop
                    buf = buf[drop:]
        if skipped < 0 and buf.strip():
            yield from _txt_piece(split, offset, buf, cfg)


def _txt_piece(split: Split, offset: int, raw: bytes, cfg: IngestConfig) -> Iterator[tuple[str, dict]]:
    if not raw.strip() and cfg.txt_separator:
        return  # consecutive separators
    if len(raw) > cfg.max_record_bytes:
        yield (
            "ledger",
            _quarantine(
                split,
                "record-too-large",
                offset,
                f"document is {len(raw)} bytes, over {cfg.max_record_bytes}",
                raw,
                nbytes=len(raw),
            ),
        )
        return
    text, bad = _decode(split, raw, offset)
    if bad or text is None:
        yield "ledger", bad or {}
        return
    yield _make_document(split, offset, text, {}, cfg)


def _parquet_records(split: Split, cfg: IngestConfig) -> Iterator[tuple[str, dict]]:
    with storage.open_parquet(split.path) as pf:
        yield from _parquet_file_records(split, cfg, pf)


def _parquet_file_records(split: Split, cfg: IngestConfig, pf: pq.ParquetFile) -> Iterator[tuple[str, dict]]:
    if cfg.text_field not in pf.schema_arrow.names:
        yield (
            "ledger",
            _quarantine(
                split, "missing-text-field", 0, f"Parquet file has no column {cfg.text_field!r}", nbytes=0
            ),
        )
        return
    row, total = 0, pf.metadata.num_rows
    try:
        for batch in pf.iter_batches(batch_size=1024):
            for record in batch.to_pylist():
                yield _from_record(
                    split, row, record, cfg, json.dumps(record, default=str, ensure_ascii=False)[:2000]
                )
                row += 1
    except Exception as exc:  # corrupt page, value Python cannot represent, ...
        yield (
            "ledger",
            _quarantine(
                split,
                "unreadable-file",
                row,
                f"cannot read {split.source} from row {row}: {type(exc).__name__}: {exc}; "
                f"{total - row} of {total} rows not read",
                nbytes=0,
            ),
        )


READERS = {"jsonl": _jsonl_records, "txt": _txt_records, "parquet": _parquet_records}


def read_split(split: Split, cfg: IngestConfig) -> Iterator[tuple[str, dict]]:
    """Yield ("documents", doc) or ("ledger", quarantine row) for every record of ``split``.

    A file that cannot be opened or that breaks mid-way (truncated gzip, I/O error) yields an
    ``unreadable-file`` row after the records read so far; it never raises.
    """
    if split.fmt == "hidden":
        yield (
            "ledger",
            _quarantine(
                split,
                "hidden-file",
                0,
                f"{split.source!r} is a dot file or inside a dot directory; not read as corpus input",
                nbytes=split.size,
            ),
        )
        return
    if split.fmt == "unsupported":
        size = split.size
        yield (
            "ledger",
            _quarantine(
                split,
                "unsupported-format",
                0,
                f"no reader for {split.source.rsplit('/', 1)[-1]!r}; supported: .jsonl .json .ndjson .txt .text .md .parquet (+ .gz/.zst)",
                nbytes=size,
            ),
        )
        return
    try:
        yield from READERS[split.fmt](split, cfg)
    except (OSError, EOFError, ValueError) as exc:  # includes gzip/zstd/parquet corruption
        detail = f"{type(exc).__name__}: {exc}"
        yield (
            "ledger",
            _quarantine(
                split, "unreadable-file", split.start, f"cannot read {split.source}: {detail}", nbytes=0
            ),
        )
    except Exception as exc:  # pyarrow raises its own error types
        yield (
            "ledger",
            _quarantine(
                split,
                "unreadable-file",
                split.start,
                f"cannot read {split.source}: {type(exc).__name__}: {exc}",
                nbytes=0,
            ),
        )


class IngestWork(SplitWork):
    """One split -> ``documents`` and ``ledger`` (quarantine) rows; ``stats["records"]`` counts every
    record the reader emitted (the conservation input: data, not Beam counters)."""

    schemas = {"documents": schemas.DOCUMENTS, "ledger": schemas.LEDGER}

    def __init__(self, cfg: IngestConfig) -> None:
        self.cfg = cfg
        self.docs = counter("raw.documents")
        self.bad = counter("raw.quarantined")

    def rows(self, item: tuple[Split, ...], stats: dict[str, Any], **side: Any) -> Iterator[tuple[str, dict]]:
        records = 0
        for split in item:  # the files (or the byte range) of one ingestion split, in listing order
            for kind, row in read_split(split, self.cfg):
                records += 1
                (self.docs if kind == "documents" else self.bad).inc()
                yield kind, row
        stats["records"] = records


def build_ingest(
    pipeline: beam.Pipeline,
    groups: list[tuple[str, tuple[Split, ...]]],
    cfg: CorpusforgeConfig,
    out_dir: str,
    run: Any,
) -> None:
    """Every ingestion split (key, its files) read by :class:`IngestWork` into the version's shards."""
    process_splits(pipeline, groups, out_dir, IngestWork(cfg.raw), cfg.output, run=run, label="Read")


def input_fingerprint(splits: list[Split]) -> str:
    """Cheap identity of the input files: names, sizes and change stamps (mtime_ns or ETag)."""
    seen = {s.source: (s.size, s.stamp) for s in splits}
    return fingerprint(sorted(seen.items()))


def split_identity(split: Split) -> str:
    """What a split read: file, size, change stamp and byte range (a changed file is a new input)."""
    return json.dumps([split.source, split.size, split.stamp, split.start, split.end])


def group_identity(group: tuple[Split, ...]) -> str:
    """What an ingestion split (a group of files, or one byte range) read."""
    return json.dumps([json.loads(split_identity(s)) for s in group])


def group_members(identity: str) -> list[str]:
    """The file identities of a group identity (``[]`` for an identity of another format)."""
    try:
        members = json.loads(identity)
    except (TypeError, ValueError):
        return []
    if not isinstance(members, list) or not all(isinstance(m, list) and len(m) == 5 for m in members):
        return []
    return [json.dumps(m) for m in members]


def coalesce(splits: list[Split], limit: int) -> list[tuple[Split, ...]]:
    """Consecutive whole files of at most ``limit`` bytes together (a byte range, or a file of
    ``limit`` bytes or more, stays alone); ``limit`` 0: one group per split."""
    groups: list[tuple[Split, ...]] = []
    current: list[Split] = []
    size = 0
    for split in splits:
        whole = split.start == 0 and split.end < 0
        if not limit or not whole or split.size >= limit:
            groups += [tuple(current)] if current else []
            groups.append((split,))
            current, size = [], 0
            continue
        if current and size + split.size > limit:
            groups.append(tuple(current))
            current, size = [], 0
        current.append(split)
        size += split.size
    if current:
        groups.append(tuple(current))
    return groups


@dataclass(frozen=True)
class Batch:
    """What is new in the input since the stage's current version (see :func:`plan_batch`)."""

    number: int
    groups: list[tuple[str, tuple[Split, ...]]]  # every ingestion split by key: carried ones keep theirs
    new_files: int
    changed_files: int
    removed_files: int
    previous: str | None  # the version the batch adds to

    def summary(self) -> dict[str, Any]:
        return {
            "number": self.number,
            "previous": self.previous,
            "new_files": self.new_files,
            "changed_files": self.changed_files,
            "removed_files": self.removed_files,
        }


def coalesce_limit(splits: list[Split], cfg: IngestConfig) -> int:
    """Bytes per coalesced split: ``coalesce_bytes``, lowered so that the files make at least
    ``min_splits`` splits (0: no coalescing)."""
    if not cfg.coalesce_bytes:
        return 0
    total = sum(s.size for s in splits)
    return max(1, min(cfg.coalesce_bytes, math.ceil(total / cfg.min_splits)))


def plan_batch(
    splits: list[Split], previous: dict[str, dict[str, Any]], number: int, name: str | None, cfg: IngestConfig
) -> Batch:
    """Ingestion splits keyed against the previous version's (``carry.read_splits``): a group whose
    files are all still there unchanged keeps its key and members (and is carried); every other file
    (new, changed, or grouped with a changed or removed one) is grouped anew (:func:`coalesce`) under
    ``b<number>-<i>`` keys. Files the previous version read that are gone or changed are retracted."""
    from pipelines import carry

    by_identity = {split_identity(s): s for s in splits}
    taken: set[str] = set()
    groups: list[tuple[str, tuple[Split, ...]]] = []
    before: dict[str, list[Any]] = {}
    for key, split in sorted(previous.items()):
        members = group_members(split["input"])
        for m in members:
            source, size, stamp = json.loads(m)[:3]
            before[source] = [size, stamp]
        if members and all(m in by_identity and m not in taken for m in members):
            groups.append((key, tuple(by_identity[m] for m in members)))
            taken.update(members)
    rest = [s for s in splits if split_identity(s) not in taken]
    fresh = coalesce(rest, coalesce_limit(rest, cfg))
    groups += [(carry.batch_key(number, i), g) for i, g in enumerate(fresh)]
    groups.sort(key=lambda g: g[0])
    now = {s.source: [s.size, s.stamp] for s in splits}
    return Batch(
        number=number,
        groups=groups,
        new_files=sum(1 for f in now if f not in before),
        changed_files=sum(1 for f, stamp in now.items() if f in before and before[f] != stamp),
        removed_files=sum(1 for f in before if f not in now),
        previous=name,
    )


def _finalize(entries: dict[str, Any], split_stats: list[dict[str, Any]], batch: Batch) -> dict[str, Any]:
    """Stats with the readers' record count (summed from every split's completion record) as the
    input count, never the written rows counted as the input; the batch's own counts beside them."""
    from pipelines.reports import stage_stats

    read = sum(int(s["records"]) for s in split_stats)
    new = {kind: [s for s in e["shards"] if "version" not in s] for kind, e in entries.items()}
    summary = {
        **batch.summary(),
        "documents": sum(s["rows"] for s in new.get("documents", [])),
        "quarantined": sum(s["rows"] for s in new.get("ledger", [])),
    }
    return {
        "stats": stage_stats(entries, None, read),
        "records_read": read,
        "splits": len(split_stats),
        "batch": summary,
    }


def run(job: StageJob) -> StageResult:
    """Read ``paths.input`` into a new version of the job's stage (the first stage: no upstream).

    Incremental (``output.incremental``, the default): files the current version read unchanged are
    carried, new and changed files are read as the next batch (:func:`plan_batch`)."""
    from pipelines import carry

    cfg = job.cfg
    planned = plan_splits(
        cfg.paths.input, cfg.raw, exclude=(cfg.paths.data_dir, os.environ.get("DAGSTER_HOME", ""))
    )
    section = {"paths": to_dict(cfg.paths), job.name: to_dict(cfg.raw)}
    fp = fingerprint(job.name, section, input_fingerprint(planned))
    carry_key = fingerprint(job.name, section)
    prev = carry.previous(cfg.paths.data_dir, job.name, carry_key) if cfg.output.incremental else None
    if prev is None:
        batch = plan_batch(planned, {}, 0, None, cfg.raw)
    else:
        number = int((prev.manifest().get("batch") or {}).get("number", 0)) + 1
        batch = plan_batch(planned, carry.read_splits(prev), number, prev.name, cfg.raw)
    groups = batch.groups
    sizes = {key: sum((s.end if s.end >= 0 else s.size) - s.start for s in group) for key, group in groups}
    return run_stage(
        stage=job.name,
        data_dir=cfg.paths.data_dir,
        fp=fp,
        config=section,
        upstream={"input": cfg.paths.input},
        output=cfg.output,
        build=lambda p, v, run: build_ingest(p, groups, cfg, str(v.path), run),
        options=job.options,
        finalize=lambda v, counters, entries, split_stats: _finalize(entries, split_stats, batch),
        reuse=job.reuse,
        inputs=len(groups),
        log=job.log,
        split_keys=[key for key, _ in groups],
        split_inputs={key: group_identity(group) for key, group in groups},
        carry_key=carry_key,
        split_bytes=sizes,
        sized=lambda work: for_input_size(job.options, cfg.runner, work),
    )
