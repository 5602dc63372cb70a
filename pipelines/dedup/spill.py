"""Files that carry the dedup job's shuffles instead of the runner: partitioned tables and records.

Two layouts, both written through ``pipelines.fs`` (local disk or an object store), write-once and
named by task, so a re-executed task rewrites the same bytes:

* a **partitioned table**: one Parquet file per producer task whose row groups are partitions (rows
  of partition ``q`` form one row group; the footer's ``partitions`` metadata maps ``q`` to its row
  group). A consumer of partition ``q`` reads that one row group of every producer's file
  (:func:`read_partition`), so no process ever holds more than one partition;
* **records**: fixed-width rows (a MinHash signature, quality, length and the offset of the doc id in
  a companion blob) that any task can fetch by row number with ranged reads (:func:`read_records`),
  so joins on a document never need a shuffle of the signatures.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipelines import fs

PARTITIONS_KEY = b"corpusforge.partitions"
_COALESCE_GAP = 1 << 16  # ranged reads closer than this are merged into one
_BLOCKS_PER_REQUEST = 64  # merged ranges fetched per request batch (concurrent on object stores)


class SpillError(OSError):
    """A scratch file could not be written (typically: the disk or bucket is full)."""


def _write(path: str, data: bytes, what: str) -> None:
    try:
        fs.write_bytes(path, data)
    except OSError as exc:
        hint = " (out of disk space: free space or point paths.data_dir at a larger volume)"
        raise SpillError(
            f"dedup scratch: cannot write {what} {fs.redact(path)} ({len(data):,} bytes): "
            f"{exc.strerror or exc}{hint if getattr(exc, 'errno', None) == 28 else ''}"
        ) from exc


def write_partitioned(path: str, table: pa.Table, part: np.ndarray) -> None:
    """Write ``table`` with one row group per value of ``part`` (a partition number per row)."""
    order = np.argsort(part, kind="stable")
    table, part = table.take(pa.array(order)), part[order]
    cuts = np.flatnonzero(np.diff(part)) + 1
    starts = np.concatenate([[0], cuts]).astype(np.int64)
    ends = np.concatenate([cuts, [len(part)]]).astype(np.int64)
    index = {int(part[s]): i for i, s in enumerate(starts)} if len(part) else {}
    schema = table.schema.with_metadata({PARTITIONS_KEY: json.dumps(index).encode()})
    buf = io.BytesIO()
    with pq.ParquetWriter(buf, schema, compression="zstd") as writer:
        for s, e in zip(starts.tolist(), ends.tolist(), strict=True):
            writer.write_table(table.slice(s, e - s).replace_schema_metadata(schema.metadata))
    _write(path, buf.getvalue(), "partitioned table")


def _open(path: str) -> pq.ParquetFile:
    local = fs.local_path(fs.path(path))
    if local is not None:
        return pq.ParquetFile(local)
    return pq.ParquetFile(io.BytesIO(fs.path(path).read_bytes()))


def read_partition(paths: Sequence[str], q: int, schema: pa.Schema) -> pa.Table:
    """Partition ``q`` of every file in ``paths`` (missing files and partitions contribute nothing)."""
    tables = [schema.empty_table()]
    for p in paths:
        if not fs.path(p).exists():
            continue
        pf = _open(p)
        try:
            index = json.loads((pf.schema_arrow.metadata or {}).get(PARTITIONS_KEY, b"{}"))
            rg = index.get(str(q))
            if rg is not None:
                tables.append(pf.read_row_group(rg).replace_schema_metadata(None).cast(schema))
        finally:
            pf.close()
    return pa.concat_tables(tables)


def write_table(path: str, table: pa.Table) -> None:
    """One plain Parquet scratch table."""
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd")
    _write(path, buf.getvalue(), "table")


# --------------------------------------------------------------------------------------------------
# fixed-width records, fetched by row


def record_dtype(sig_values: int, sig_itemsize: int) -> np.dtype:
    """Record layout: signature (``sig_values`` unsigned values, 0 for none), whether the document has
    one, its exact key (128 bits) and whether it has one, quality (NaN for none), length, and the doc
    id's offset and length in the ids blob. Everything the later steps need, so the records of an
    unchanged upstream shard are a sketch cache (the text is not read again)."""
    fields: list[tuple[Any, ...]] = []
    if sig_values:
        fields.append(("sig", f"<u{sig_itemsize}", (sig_values,)))
    fields += [
        ("has_sig", "u1"),
        ("exact", "<u8", (2,)),
        ("has_exact", "u1"),
        ("quality", "<f8"),
        ("length", "<i8"),
        ("id_off", "<u8"),
        ("id_len", "<u4"),
    ]
    return np.dtype(fields)


def read_all_records(base: str, dtype: np.dtype) -> np.ndarray:
    """Every record of ``<base>.rec``."""
    with fs.open_read(f"{base}.rec") as fh:
        return np.frombuffer(fh.read(), dtype=dtype).copy()


def write_records(base: str, records: np.ndarray, ids: Sequence[str]) -> None:
    """``<base>.rec`` (the records, ``id_off``/``id_len`` filled here) and ``<base>.ids`` (UTF-8 ids)."""
    encoded = [i.encode("utf-8", "surrogatepass") for i in ids]
    lengths = np.fromiter((len(e) for e in encoded), dtype=np.uint64, count=len(encoded))
    records["id_len"] = lengths
    records["id_off"] = np.concatenate([[0], np.cumsum(lengths)[:-1]]) if len(encoded) else lengths
    _write(f"{base}.ids", b"".join(encoded), "doc ids")
    _write(f"{base}.rec", records.tobytes(), "records")


def _read_blocks(path: str, starts: np.ndarray, ends: np.ndarray) -> Iterator[tuple[int, bytes]]:
    """``(index, bytes)`` of the blocks ``[starts[i], ends[i])`` of one file: ``os.pread`` locally,
    batched ``cat_ranges`` requests on object stores (a few blocks in memory at once)."""
    local = fs.local_path(fs.path(path))
    target = fs.path(path)
    fd = os.open(local, os.O_RDONLY) if local is not None else -1
    try:
        for k in range(0, len(starts), _BLOCKS_PER_REQUEST):
            bs, be = starts[k : k + _BLOCKS_PER_REQUEST], ends[k : k + _BLOCKS_PER_REQUEST]
            if fd >= 0:
                blocks = [os.pread(fd, int(e - s), int(s)) for s, e in zip(bs, be, strict=True)]
            else:
                blocks = target.fs.cat_ranges([target.path] * len(bs), bs.tolist(), be.tolist())
            yield from enumerate(blocks, start=k)
    finally:
        if fd >= 0:
            os.close(fd)


def read_ranges(path: str, starts: np.ndarray, ends: np.ndarray) -> bytearray:
    """The concatenated byte ranges ``[starts[i], ends[i])`` of one file (sorted, non-overlapping),
    read with as few requests as nearby ranges allow, into one buffer (no second copy)."""
    out = bytearray(int((ends - starts).sum()))
    if len(starts) == 0:
        return out
    # merge ranges closer than _COALESCE_GAP into blocks, read each block once
    breaks = np.flatnonzero(starts[1:] - ends[:-1] > _COALESCE_GAP) + 1
    first = np.concatenate([[0], breaks])
    last = np.concatenate([breaks, [len(starts)]]) - 1
    view, pos = memoryview(out), 0
    for j, blk in _read_blocks(path, starts[first], ends[last]):
        s0 = int(starts[first[j]])
        for i in range(int(first[j]), int(last[j]) + 1):
            n = int(ends[i] - starts[i])
            view[pos : pos + n] = blk[int(starts[i]) - s0 : int(starts[i]) - s0 + n]
            pos += n
    return out


def _fixed_rows(path: str, rows: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Rows of a file of fixed-width records: nearby rows are read as one block and picked out of
    it with numpy (no Python work per row)."""
    out = np.empty(len(rows), dtype=dtype)
    if not len(rows):
        return out
    size = dtype.itemsize
    breaks = np.flatnonzero(np.diff(rows) > max(1, _COALESCE_GAP // size)) + 1
    first = np.concatenate([[0], breaks])
    last = np.concatenate([breaks, [len(rows)]])
    for j, blk in _read_blocks(path, rows[first] * size, (rows[last - 1] + 1) * size):
        f, la = int(first[j]), int(last[j])
        out[f:la] = np.frombuffer(blk, dtype=dtype)[rows[f:la] - rows[f]]
    return out


def read_records(
    base: str, rows: np.ndarray, dtype: np.dtype, with_ids: bool = True
) -> tuple[np.ndarray, list[str]]:
    """Records of ``rows`` (sorted, unique row numbers) and, with ``with_ids``, their doc ids."""
    rows = np.asarray(rows, dtype=np.int64)
    recs = _fixed_rows(f"{base}.rec", rows, dtype)
    if not with_ids:
        return recs, []
    offs = recs["id_off"].astype(np.int64)
    blob = read_ranges(f"{base}.ids", offs, offs + recs["id_len"].astype(np.int64))
    ids, pos = [], 0
    for n in recs["id_len"].tolist():
        ids.append(blob[pos : pos + n].decode("utf-8", "surrogatepass"))
        pos += n
    return recs, ids
