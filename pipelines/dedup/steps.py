"""The tasks of the dedup job, each bounded in memory and talking to the next through files.

A document is known by its *gid*, ``chunk << 32 | row in chunk``; chunks are runs of upstream row
groups (:class:`Plan`). Steps (``job.py`` runs each as a Beam step, barriers between them):

1. :func:`sketch_chunk` (one task per chunk): exact key and MinHash signature of every document;
   writes the chunk's fixed-width records (``spill.write_records``) and its keys as a partitioned
   table: one row per (band, document) in band partitions, one per document in exact partitions;
2. :func:`merge_group` (one task per group of partitions, :meth:`Plan.merge_groups`), each partition by
   :func:`merge_partition`: a band partition is sorted by key, each bucket
   gives star edges from its first document, and the distinct edges are verified against the
   threshold with the two signatures fetched by row (``spill.read_records``); an exact partition
   gives ``(member, survivor)`` pairs of each group of equal keys. A delta merge
   (``Plan.old_chunks``) verifies only buckets with a new document (:func:`_delta_merge`);
3. :func:`components` (one task): union-find over the streamed edge files with an array of one
   integer per document (the only state that grows with the corpus: 8 bytes per document, plus 8 for
   the exact survivor); writes the members of every component of two or more documents,
   partitioned by component;
4. :func:`decide_partition` (one task per member partition): survivor-centred clusters of each
   component (``clusters.py``: no chained removals), exact duplicates re-pointed to their survivor's
   final cluster (``decisions.final_decisions``); decisions written partitioned by upstream split;
5. ``job.FilterShardFn`` (one task per split) joins a split's documents with its decisions.

Every task returns a small statistics dict (:func:`merge_stats` combines them). Outputs do not
depend on the chunking, the partition counts or the number of workers.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from pipelines import fs, storage
from pipelines.carry import batch_of
from pipelines.config import DedupConfig
from pipelines.dedup import spill
from pipelines.dedup.clusters import survivor_clusters, survivor_order
from pipelines.dedup.decisions import final_decisions
from pipelines.dedup.lsh import optimal_bands_rows
from pipelines.dedup.near import REHUB_ROUNDS
from pipelines.dedup.sketch import DocumentSketcher
from pipelines.dedup.survivor import decision, survivor_key

ROW_BITS = 32
ROW_MASK = (1 << ROW_BITS) - 1
NONE = np.iinfo(np.uint64).max  # "no exact survivor"
EXAMPLE_CLUSTERS = 3
EDGE_BATCH = 1 << 16  # edges read and unioned per vectorised step
COMPARE_BATCH = 1 << 14  # signature pairs compared per vectorised step (2 x 16 MB at 256 perms)
VERIFY_ROWS = 1 << 15  # bucket rows whose signatures one verification batch holds (~32 MB at 256 perms)
BANDS_PER_TASK = 16  # band partitions per merge task, sharing one signature cache
SIG_CACHE_BYTES = 256 << 20  # signatures a merge task keeps for its next band partitions

KEYS = pa.schema([("k1", pa.uint64()), ("k2", pa.uint64()), ("gid", pa.uint64())])
EDGES = pa.schema([("a", pa.uint64()), ("b", pa.uint64())])
EXACT = pa.schema([("member", pa.uint64()), ("survivor", pa.uint64())])
MEMBERS = pa.schema([("root", pa.int64()), ("gid", pa.uint64()), ("exact", pa.uint64())])
DECISIONS = pa.schema(
    [
        ("row", pa.int64()),
        ("doc_id", pa.string()),
        ("cluster_id", pa.string()),
        ("kind", pa.string()),
        ("similarity", pa.float64()),
    ]
)


@dataclass(frozen=True)
class Chunk:
    """Row groups ``[first_group, end_group)`` of split ``split`` (upstream shard ``path``)."""

    index: int
    split: int
    path: str
    first_group: int
    end_group: int
    first_row: int  # row of the chunk's first document within its split
    rows: int
    records: str = ""  # base path of its fixed-width records (default: in the work directory)
    cached: bool = False  # the records exist already (an unchanged shard): sketching only reads them
    batch: int = 0  # the input batch of its split (the first key of the survivor rule)


@dataclass(frozen=True)
class Plan:
    """Everything a task needs: scratch directory, chunks, partition counts and the dedup rules."""

    work: str
    chunks: tuple[Chunk, ...]
    cfg: DedupConfig
    bands: int
    rows: int
    band_parts: int  # sub-partitions per band
    exact_parts: int
    member_parts: int
    edges: str = ""  # directory of this run's band edge files (kept: the next run's edge segment)
    # delta merge: chunks [0, old_chunks) are those of the previous version, in the same order, whose
    # band edges are the files of ``segments`` (directories); only buckets holding a newer document
    # are verified (see merge_partition)
    old_chunks: int = 0
    segments: tuple[str, ...] = ()

    @property
    def offsets(self) -> np.ndarray:
        """Dense index of each chunk's first document (chunks in corpus order)."""
        rows = np.array([c.rows for c in self.chunks], dtype=np.int64)
        return np.concatenate([[0], np.cumsum(rows)[:-1]]).astype(np.int64)

    @property
    def documents(self) -> int:
        return sum(c.rows for c in self.chunks)

    def merge_tasks(self) -> list[int]:
        """Partition numbers of step 2: band partitions first, then exact partitions."""
        n = (self.bands * self.band_parts if self.cfg.near else 0) + (
            self.exact_parts if self.cfg.exact else 0
        )
        return list(range(n))

    def merge_groups(self) -> list[list[int]]:
        """The partitions of each merge task: band partitions dealt round-robin into groups of about
        ``BANDS_PER_TASK`` (a task fetches a document's signature once for all its bands while its
        :class:`SignatureCache` holds it), then one task per exact partition."""
        parts = self.merge_tasks()
        band = [p for p in parts if not self.is_exact(p)]
        n = math.ceil(len(band) / BANDS_PER_TASK)
        return [band[g::n] for g in range(n)] + [[p] for p in parts if self.is_exact(p)]

    def is_exact(self, part: int) -> bool:
        return not self.cfg.near or part >= self.bands * self.band_parts

    def record_dtype(self) -> np.dtype:
        itemsize = 4 if self.cfg.minhash_scheme == "affine32" else 8
        return spill.record_dtype(self.cfg.num_perm if self.cfg.near else 0, itemsize)

    def records(self, chunk: int) -> str:
        return self.chunks[chunk].records or f"{self.work}/rec/{chunk:06d}"

    def batches(self) -> np.ndarray:
        """Input batch of each chunk (by chunk index)."""
        return np.array([c.batch for c in self.chunks], dtype=np.int64)

    def keys(self, chunk: int) -> str:
        return f"{self.work}/keys/{chunk:06d}.parquet"

    def merged(self, part: int) -> str:
        if self.is_exact(part):
            return f"{self.work}/exact/{part:05d}.parquet"
        return f"{self.edges or self.work + '/edges'}/{part:05d}.parquet"

    def edge_files(self, part: int) -> list[str]:
        """Every file holding band edges of partition ``part``: the earlier segments' and this run's."""
        if self.is_exact(part):
            return [self.merged(part)]
        return [f"{d}/{part:05d}.parquet" for d in self.segments] + [self.merged(part)]

    def record_names(self) -> list[str]:
        """The records file of every chunk by name (what a later run's delta merge checks)."""
        return [self.records(c.index).rsplit("/", 1)[-1] for c in self.chunks]

    def members(self) -> str:
        return f"{self.work}/members.parquet"

    def decisions(self, q: int) -> str:
        return f"{self.work}/decisions/{q:05d}.parquet"


def make_plan(
    splits: Sequence[tuple[str, str]],
    cfg: DedupConfig,
    work: str,
    *,
    records_dir: str = "",
    inputs: Mapping[str, str] | None = None,
    cache: Mapping[str, str] | None = None,
) -> Plan:
    """Chunks of about ``cfg.chunk_rows`` documents from the shards' row groups, and partition counts
    that keep every partition near ``cfg.partition_rows`` rows.

    With ``inputs`` (split key -> shard sha256) the records of a chunk are named by its shard's
    checksum and its place in the shard, under ``records_dir``; ``cache`` (sha256 -> a records
    directory of an earlier version) marks the chunks of unchanged shards as cached."""
    partition_rows = cfg.partition_rows
    chunks: list[Chunk] = []
    for s, (key, path) in enumerate(splits):
        with storage.open_parquet(path) as pf:
            sizes = [pf.metadata.row_group(i).num_rows for i in range(pf.metadata.num_row_groups)]
        sha = (inputs or {}).get(key, "")
        home = (cache or {}).get(sha, "") if sha else ""
        start, rows, first_row = 0, 0, 0
        for g, n in enumerate(sizes):
            rows += n
            if rows >= cfg.chunk_rows or g == len(sizes) - 1:
                j = len(chunks)
                name = f"{sha[:32]}-{start:05d}" if sha else ""
                records = f"{home or records_dir}/{name}" if name and (home or records_dir) else ""
                batch = batch_of(key)
                chunks.append(Chunk(j, s, path, start, g + 1, first_row, rows, records, bool(home), batch))
                start, first_row, rows = g + 1, first_row + rows, 0
    docs = sum(c.rows for c in chunks)
    bands, rows_per_band = optimal_bands_rows(cfg.threshold, cfg.num_perm, cfg.fp_weight, cfg.fn_weight)
    parts = max(1, math.ceil(docs / partition_rows))
    return Plan(
        work=work,
        chunks=tuple(chunks),
        cfg=cfg,
        bands=bands,
        rows=rows_per_band,
        band_parts=parts,
        exact_parts=max(2, parts),
        member_parts=max(4, math.ceil(docs / (partition_rows // 4))),
    )


# --------------------------------------------------------------------------------------------------
# 1. sketch


def _mix64(x: np.ndarray) -> np.ndarray:
    """MurmurHash3's 64-bit finaliser, vectorised."""
    x = x.astype(np.uint64, copy=True)
    x ^= x >> np.uint64(33)
    x *= np.uint64(0xFF51AFD7ED558CCD)
    x ^= x >> np.uint64(33)
    x *= np.uint64(0xC4CEB9FE1A85EC53)
    x ^= x >> np.uint64(33)
    return x


def band_key_columns(sigs: np.ndarray, band: int, rows: int) -> tuple[np.ndarray, np.ndarray]:
    """Two 64-bit columns that identify the values of one band: the values themselves when they fit
    in 16 bytes, else two independent 64-bit hashes of them."""
    vals = np.ascontiguousarray(sigs[:, band * rows : (band + 1) * rows])
    width = vals.dtype.itemsize * rows
    if width <= 16:
        raw = np.zeros((len(vals), 16), dtype=np.uint8)
        raw[:, :width] = vals.view(np.uint8).reshape(len(vals), width)
        pair = raw.view("<u8")
        return pair[:, 0].copy(), pair[:, 1].copy()
    v = vals.astype(np.uint64)
    h1 = np.full(len(v), 0x9E3779B97F4A7C15, dtype=np.uint64)
    h2 = np.full(len(v), 0xC2B2AE3D27D4EB4F, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for j in range(rows):
            h1 = _mix64(h1 ^ v[:, j])
            h2 = _mix64(h2 + v[:, j] * np.uint64(0x165667B19E3779F9))
    return h1, h2


def sketch_chunk(chunk: Chunk, plan: Plan) -> dict[str, int]:
    """Step 1 for one chunk: records (read back when cached) and partitioned keys (see the module
    docstring)."""
    if chunk.cached:
        rec = spill.read_all_records(plan.records(chunk.index), plan.record_dtype())
        if len(rec) != chunk.rows:
            raise RuntimeError(
                f"cached records {plan.records(chunk.index)}: {len(rec)} rows, expected {chunk.rows}"
            )
    else:
        rec = _sketch_records(chunk, plan)
    n = len(rec)
    cfg = plan.cfg
    gid = (np.uint64(chunk.index) << np.uint64(ROW_BITS)) | np.arange(n, dtype=np.uint64)
    cols: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []  # k1, k2, gid, part
    if cfg.near:
        signed = np.flatnonzero(rec["has_sig"])
        sig = rec["sig"][signed]
        for b in range(plan.bands):
            k1, k2 = band_key_columns(sig, b, plan.rows)
            part = b * plan.band_parts + (_mix64(k1 ^ k2) % np.uint64(plan.band_parts)).astype(np.int64)
            cols.append((k1, k2, gid[signed], part))
    if cfg.exact:
        keyed = np.flatnonzero(rec["has_exact"])
        raw = rec["exact"][keyed]
        first = plan.bands * plan.band_parts if cfg.near else 0
        part = first + (raw[:, 0] % np.uint64(plan.exact_parts)).astype(np.int64)
        cols.append((raw[:, 0], raw[:, 1], gid[keyed], part))
    if cols:
        table = pa.table(
            {
                "k1": np.concatenate([c[0] for c in cols]),
                "k2": np.concatenate([c[1] for c in cols]),
                "gid": np.concatenate([c[2] for c in cols]),
            },
            schema=KEYS,
        )
        spill.write_partitioned(plan.keys(chunk.index), table, np.concatenate([c[3] for c in cols]))
    return {
        "documents": n,
        "without_shingles": int(n - rec["has_sig"].sum()),
        "sketches_reused": n if chunk.cached else 0,
    }


def _sketch_records(chunk: Chunk, plan: Plan) -> np.ndarray:
    """Exact key and MinHash signature of every document of a chunk, as fixed-width records (written)."""
    cfg = plan.cfg
    sketcher = DocumentSketcher(cfg)
    ids: list[str] = []
    quality: list[float] = []
    length: list[int] = []
    keys: list[bytes | None] = []
    sigs: list[np.ndarray] = []
    has: list[np.ndarray] = []
    with storage.open_parquet(chunk.path) as pf:
        groups = list(range(chunk.first_group, chunk.end_group))
        for batch in pf.iter_batches(batch_size=256, row_groups=groups, columns=["id", "text", "quality"]):
            texts = batch.column("text").to_pylist()
            ids += batch.column("id").to_pylist()
            quality += [math.nan if q is None else q for q in batch.column("quality").to_pylist()]
            length += [len(t) for t in texts]
            k, s, h = sketcher.sketch_arrays(texts)
            keys += k
            has.append(h)
            if s is not None:
                sigs.append(s)
    n = len(ids)
    if n != chunk.rows:
        raise RuntimeError(f"chunk {chunk.index} of {chunk.path}: read {n} rows, expected {chunk.rows}")
    rec = np.zeros(n, dtype=plan.record_dtype())
    rec["has_sig"] = np.concatenate(has) if has else np.zeros(0, dtype=bool)
    rec["quality"] = quality
    rec["length"] = length
    if sigs and cfg.near:
        rec["sig"] = np.concatenate(sigs)
    keyed = [i for i, k in enumerate(keys) if k is not None]
    if keyed:
        rec["exact"][keyed] = np.frombuffer(b"".join(keys[i] for i in keyed), dtype="<u8").reshape(-1, 2)  # type: ignore[misc]
        rec["has_exact"][keyed] = 1
    spill.write_records(plan.records(chunk.index), rec, ids)
    return rec


# --------------------------------------------------------------------------------------------------
# 2. merge


def _runs(k1: np.ndarray, k2: np.ndarray, gid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sort rows by (k1, k2, gid); returns the sort order and each sorted row's run start index."""
    order = np.lexsort((gid, k2, k1))
    a, b = k1[order], k2[order]
    new = np.ones(len(order), dtype=bool)
    new[1:] = (a[1:] != a[:-1]) | (b[1:] != b[:-1])
    start = np.maximum.accumulate(np.where(new, np.arange(len(order)), 0))
    return order, start


def fetch(plan: Plan, gids: np.ndarray, with_ids: bool = True) -> tuple[np.ndarray, list[str]]:
    """Records (and doc ids) of sorted unique ``gids``, read by row from each chunk's records."""
    dtype = plan.record_dtype()
    chunk_of = (gids >> np.uint64(ROW_BITS)).astype(np.int64)
    cuts = np.flatnonzero(np.diff(chunk_of)) + 1
    recs, ids = [], []
    for part in np.split(np.arange(len(gids)), cuts):
        if not len(part):
            continue
        rows = (gids[part] & np.uint64(ROW_MASK)).astype(np.int64)
        r, i = spill.read_records(plan.records(int(chunk_of[part[0]])), rows, dtype, with_ids)
        recs.append(r)
        ids += i
    return (np.concatenate(recs) if recs else np.zeros(0, dtype=dtype)), ids


def _pairs_unique(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    order = np.lexsort((b, a))
    a, b = a[order], b[order]
    keep = np.ones(len(a), dtype=bool)
    keep[1:] = (a[1:] != a[:-1]) | (b[1:] != b[:-1])
    return a[keep], b[keep]


class SignatureCache:
    """Signatures fetched by gid (``fetch``), kept for the next band partitions of one merge task: a
    document is in one bucket per band, so without it a task would read its signature once per band.
    Holds at most ``limit`` bytes (rows appended to one buffer, found through a sorted gid index);
    when a fetch would overflow it, it starts again from that fetch."""

    def __init__(self, plan: Plan, limit: int | None = None) -> None:
        self.plan = plan
        self.limit = SIG_CACHE_BYTES if limit is None else limit
        self.gids = np.zeros(0, dtype=np.uint64)  # sorted
        self.slots = np.zeros(0, dtype=np.int64)  # row of each sorted gid in ``buffer``
        self.buffer: np.ndarray | None = None
        self.used = 0

    def get(self, gids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(array, index)``: the signatures of sorted unique ``gids`` are ``array[index]`` (the
        cache's own buffer when they fit in it, so hits are not copied)."""
        pos = np.searchsorted(self.gids, gids)
        hit = np.zeros(len(gids), dtype=bool)
        inside = pos < len(self.gids)
        hit[inside] = self.gids[pos[inside]] == gids[inside]
        missing = gids[~hit]
        fresh = fetch(self.plan, missing, with_ids=False)[0]["sig"]
        if self.buffer is None:
            row = max(1, fresh.itemsize * int(np.prod(fresh.shape[1:])))
            capacity = min(self.limit // row, self.plan.documents)
            self.buffer = np.empty((capacity, *fresh.shape[1:]), dtype=fresh.dtype)
        if self.used + len(missing) <= len(self.buffer):
            self._add(missing, fresh)
            return self.buffer, self.slots[np.searchsorted(self.gids, gids)]
        out = np.empty((len(gids), *fresh.shape[1:]), dtype=fresh.dtype)
        out[~hit] = fresh
        out[hit] = self.buffer[self.slots[pos[hit]]]
        self.gids, self.slots, self.used = self.gids[:0], self.slots[:0], 0  # full: start again
        if len(gids) <= len(self.buffer):
            self._add(gids, out)
        return out, np.arange(len(gids))

    def _add(self, gids: np.ndarray, sigs: np.ndarray) -> None:
        assert self.buffer is not None
        self.buffer[self.used : self.used + len(gids)] = sigs
        gids_all = np.concatenate([self.gids, gids])
        slots_all = np.concatenate([self.slots, np.arange(self.used, self.used + len(gids), dtype=np.int64)])
        order = np.argsort(gids_all, kind="stable")
        self.gids, self.slots = gids_all[order], slots_all[order]
        self.used += len(gids)


def merge_group(group: int, plan: Plan) -> dict[str, int]:
    """Step 2 for one merge task: its partitions (``Plan.merge_groups``) with one signature cache."""
    cache = SignatureCache(plan)
    return merge_stats(merge_partition(part, plan, cache) for part in plan.merge_groups()[group])


def merge_partition(part: int, plan: Plan, cache: SignatureCache | None = None) -> dict[str, int]:
    """Step 2 for one partition: verified star edges (band) or exact pairs (exact)."""
    paths = [plan.keys(c.index) for c in plan.chunks]
    t = spill.read_partition(paths, part, KEYS)
    k1, k2, gid = (t.column(c).to_numpy() for c in ("k1", "k2", "gid"))
    del t
    order, start = _runs(k1, k2, gid)
    gid = gid[order]
    del k1, k2, order
    if plan.is_exact(part):
        return _exact_pairs(part, plan, gid, start)
    size = np.bincount(start, minlength=len(gid))
    grouped = np.flatnonzero(size[start] > 1)
    gid, start = gid[grouped], np.searchsorted(grouped, start[grouped])
    if plan.old_chunks:
        return _delta_merge(part, plan, cache or SignatureCache(plan, limit=0), gid, start)
    if not plan.cfg.verify:
        is_member = start != np.arange(len(gid))
        a, b = _pairs_unique(gid[start[is_member]], gid[is_member])
        spill.write_table(plan.merged(part), pa.table({"a": a, "b": b}, schema=EDGES))
        return {"candidate_pairs": int(len(a)), "verified_pairs": int(len(a))}
    # whole buckets in batches of about VERIFY_ROWS rows: a document is in one bucket per band, so each
    # batch fetches distinct signatures and memory stays bounded whatever the partition size
    cache = cache or SignatureCache(plan, limit=0)
    src, dst, tried = [], [], 0
    cuts = np.flatnonzero(np.diff(start)) + 1
    bounds = np.concatenate([[0], cuts, [len(gid)]]).astype(np.int64)
    lo = 0
    while lo < len(gid):
        hi = int(bounds[np.searchsorted(bounds, lo + VERIFY_ROWS, side="right") - 1])
        if hi <= lo:  # one bucket larger than a batch: alone
            hi = int(bounds[np.searchsorted(bounds, lo, side="right")])
        g = gid[lo:hi]
        order = np.argsort(g)
        sig, index = cache.get(g[order])
        at = np.empty(len(g), dtype=np.int64)
        at[order] = index
        a, b, n = verified_bucket_edges(start[lo:hi] - lo, sig, plan.cfg.threshold, at=at)
        del sig
        src.append(g[a])
        dst.append(g[b])
        tried += n
        lo = hi
    a, b = _pairs_unique(
        np.concatenate(src or [np.zeros(0, np.uint64)]), np.concatenate(dst or [np.zeros(0, np.uint64)])
    )
    spill.write_table(plan.merged(part), pa.table({"a": a, "b": b}, schema=EDGES))
    return {"candidate_pairs": tried, "verified_pairs": int(len(a))}


def verified_bucket_edges(
    start: np.ndarray,
    sig: np.ndarray,
    threshold: float,
    rounds: int = REHUB_ROUNDS,
    at: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, int]:
    """Verified edges of LSH buckets: rows ``i`` of a bucket share ``start[i]`` (its first row, in
    corpus order) and have signatures ``sig[i]`` (``sig[at[i]]`` with ``at``).

    Round 1 links every member to the bucket's first member (the hub) when their estimated Jaccard
    clears ``threshold``; the members that failed form the next round's bucket with their first
    as hub, up to ``rounds`` rounds. So a dissimilar hub does not hide pairs of similar members.
    Returns the row pairs and the number of pairs compared.
    """

    def similar(others: np.ndarray, hubs: np.ndarray) -> np.ndarray:
        ok = np.zeros(len(others), dtype=bool)
        for s in range(0, len(others), COMPARE_BATCH):
            o, h = others[s : s + COMPARE_BATCH], hubs[s : s + COMPARE_BATCH]
            if at is not None:
                o, h = at[o], at[h]
            ok[s : s + COMPARE_BATCH] = (sig[o] == sig[h]).mean(axis=1) >= threshold
        return ok

    return star_rounds(start, similar, rounds)


def star_rounds(
    start: np.ndarray, similar: Any, rounds: int = REHUB_ROUNDS
) -> tuple[np.ndarray, np.ndarray, int]:
    """The rounds of :func:`verified_bucket_edges` with ``similar(others, hubs) -> bool array`` (row
    numbers) deciding each comparison."""
    active = np.ones(len(start), dtype=bool)
    src, dst = [], []
    tried = 0
    for _ in range(rounds):
        rows = np.flatnonzero(active)
        if not len(rows):
            break
        run = start[rows]
        first = np.ones(len(rows), dtype=bool)
        first[1:] = run[1:] != run[:-1]
        hub_of = rows[np.maximum.accumulate(np.where(first, np.arange(len(rows)), 0))]
        others = rows[~first]
        hubs = hub_of[~first]
        ok = similar(others, hubs)
        tried += len(others)
        src.append(hubs[ok])
        dst.append(others[ok])
        active[:] = False
        active[others[~ok]] = True
        start = start.copy()
        # a failed member's bucket for the next round: the failed members of its bucket
        failed = others[~ok]
        if len(failed):
            run_f = start[failed]
            new = np.ones(len(failed), dtype=bool)
            new[1:] = run_f[1:] != run_f[:-1]
            start[failed] = failed[np.maximum.accumulate(np.where(new, np.arange(len(failed)), 0))]
    empty = np.zeros(0, dtype=np.int64)
    return (np.concatenate(src) if src else empty), (np.concatenate(dst) if dst else empty), tried


def _delta_merge(
    part: int, plan: Plan, cache: SignatureCache, gid: np.ndarray, start: np.ndarray
) -> dict[str, int]:
    """A band partition when the chunks before ``plan.old_chunks`` were merged by an earlier version
    (same order, same partitioning) whose edges are in ``plan.segments``: only buckets holding a newer
    document are verified, and only what the earlier run could not have compared is compared.

    Exact: new documents come after every old one in corpus order, so in a bucket's rounds an old
    member meets the same hubs as before, and whether it passed is whether the earlier edges hold
    ``(hub, member)`` (an edge is kept in any bucket whose rounds pair it, and its result depends only
    on the two signatures). Pairs with a new document are compared by signature. The earlier edges
    plus the new ones written here are then the edges a full merge would give."""
    new = (gid >> np.uint64(ROW_BITS)) >= np.uint64(plan.old_chunks)
    bucket_new = np.zeros(len(gid), dtype=bool)
    np.logical_or.at(bucket_new, start, new)
    rows = np.flatnonzero(bucket_new[start])  # the rows of buckets with a new member
    gid, start, new = gid[rows], np.searchsorted(rows, start[rows]), new[rows]
    old_keys = _old_edge_keys(part, plan)
    n = np.int64(max(plan.documents, 1))
    dense = _dense(plan, gid)
    threshold = plan.cfg.threshold
    src, dst, tried, looked_up = [], [], 0, 0
    cuts = np.flatnonzero(np.diff(start)) + 1
    bounds = np.concatenate([[0], cuts, [len(gid)]]).astype(np.int64)
    lo = 0
    while lo < len(gid):
        hi = int(bounds[np.searchsorted(bounds, lo + VERIFY_ROWS, side="right") - 1])
        if hi <= lo:
            hi = int(bounds[np.searchsorted(bounds, lo, side="right")])
        g, d, nw = gid[lo:hi], dense[lo:hi], new[lo:hi]

        def similar(others: np.ndarray, hubs: np.ndarray, g=g, d=d, nw=nw) -> np.ndarray:
            nonlocal tried, looked_up
            ok = np.zeros(len(others), dtype=bool)
            known = ~nw[others] & ~nw[hubs]
            key = d[hubs[known]] * n + d[others[known]]
            pos = np.minimum(np.searchsorted(old_keys, key), max(len(old_keys) - 1, 0))
            ok[known] = old_keys[pos] == key if len(old_keys) else False
            looked_up += int(known.sum())
            todo = np.flatnonzero(~known)
            tried += len(todo)
            for s in range(0, len(todo), COMPARE_BATCH):
                t = todo[s : s + COMPARE_BATCH]
                o, h = others[t], hubs[t]
                need = np.unique(np.concatenate([g[o], g[h]]))
                sig, index = cache.get(need)
                io = index[np.searchsorted(need, g[o])]
                ih = index[np.searchsorted(need, g[h])]
                ok[t] = (sig[io] == sig[ih]).mean(axis=1) >= threshold
            return ok

        a, b, _ = star_rounds(start[lo:hi] - lo, similar)
        fresh = nw[a] | nw[b]  # edges between old documents are in the earlier segments already
        src.append(g[a[fresh]])
        dst.append(g[b[fresh]])
        lo = hi
    a, b = _pairs_unique(
        np.concatenate(src or [np.zeros(0, np.uint64)]), np.concatenate(dst or [np.zeros(0, np.uint64)])
    )
    spill.write_table(plan.merged(part), pa.table({"a": a, "b": b}, schema=EDGES))
    return {"candidate_pairs": tried, "verified_pairs": int(len(a)), "pairs_known": looked_up}


def _old_edge_keys(part: int, plan: Plan) -> np.ndarray:
    """Sorted ``dense(a) * documents + dense(b)`` of the earlier segments' edges of ``part``."""
    keys = []
    n = np.int64(max(plan.documents, 1))
    for path in plan.edge_files(part)[:-1]:
        for a, b in _edge_batches(path, ("a", "b")):
            keys.append(_dense(plan, a) * n + _dense(plan, b))
    return np.sort(np.concatenate(keys)) if keys else np.zeros(0, dtype=np.int64)


def _exact_pairs(part: int, plan: Plan, gid: np.ndarray, start: np.ndarray) -> dict[str, int]:
    sizes = np.bincount(start, minlength=len(gid))
    grouped = np.flatnonzero(sizes[start] > 1)  # sorted positions of rows in groups of two or more
    members, survivors = [], []
    if len(grouped):
        g = gid[grouped]
        uniq, inverse = np.unique(g, return_inverse=True)
        recs, ids = fetch(plan, uniq)
        q, n = recs["quality"].tolist(), recs["length"].tolist()
        batch = plan.batches()[(uniq >> np.uint64(ROW_BITS)).astype(np.int64)].tolist()
        keys = [
            survivor_key(ids[i], None if math.isnan(q[i]) else q[i], n[i], batch[i]) for i in inverse.tolist()
        ]
        group_of = start[grouped]
        cuts = np.flatnonzero(np.diff(group_of)) + 1
        for pos in np.split(np.arange(len(grouped)), cuts):
            best = min(pos.tolist(), key=keys.__getitem__)
            rest = pos[pos != best]
            members.append(g[rest])
            survivors.append(np.full(len(rest), g[best], dtype=np.uint64))
    m = np.concatenate(members) if members else np.zeros(0, dtype=np.uint64)
    s = np.concatenate(survivors) if survivors else np.zeros(0, dtype=np.uint64)
    spill.write_table(plan.merged(part), pa.table({"member": m, "survivor": s}, schema=EXACT))
    return {"exact_removed": int(len(m)), "exact_groups": int(len(np.unique(s)))}


# --------------------------------------------------------------------------------------------------
# 3. components


def _dense(plan: Plan, gid: np.ndarray) -> np.ndarray:
    offsets = plan.offsets
    return offsets[(gid >> np.uint64(ROW_BITS)).astype(np.int64)] + (gid & np.uint64(ROW_MASK)).astype(
        np.int64
    )


def _gid(plan: Plan, dense: np.ndarray) -> np.ndarray:
    offsets = plan.offsets
    chunk = np.searchsorted(offsets, dense, side="right") - 1
    return (chunk.astype(np.uint64) << np.uint64(ROW_BITS)) | (dense - offsets[chunk]).astype(np.uint64)


def _find(parent: np.ndarray, x: np.ndarray) -> np.ndarray:
    r = parent[x]
    while True:
        rr = parent[r]
        if np.array_equal(rr, r):
            return r
        r = rr


def union(parent: np.ndarray, a: np.ndarray, b: np.ndarray) -> None:
    """Join the sets of ``a[i]`` and ``b[i]`` (vectorised union by smaller root)."""
    while len(a):
        ra, rb = _find(parent, a), _find(parent, b)
        differ = ra != rb
        a, b = np.minimum(ra[differ], rb[differ]), np.maximum(ra[differ], rb[differ])
        np.minimum.at(parent, b, a)


def _edge_batches(path: str, cols: tuple[str, str]) -> Iterable[tuple[np.ndarray, np.ndarray]]:
    if not fs.path(path).exists():
        return
    with storage.open_parquet(path) as pf:
        for batch in pf.iter_batches(batch_size=EDGE_BATCH, columns=list(cols)):
            yield batch.column(0).to_numpy(), batch.column(1).to_numpy()


def components(plan: Plan) -> dict[str, int]:
    """Step 3: union-find over every edge file; writes the members of multi-document components."""
    n = plan.documents
    parent = np.arange(n, dtype=np.int64)
    exact = np.full(n, -1, dtype=np.int64)
    edges = 0
    for part in plan.merge_tasks():
        cols = ("member", "survivor") if plan.is_exact(part) else ("a", "b")
        for a, b in (batch for path in plan.edge_files(part) for batch in _edge_batches(path, cols)):
            da, db = _dense(plan, a), _dense(plan, b)
            if plan.is_exact(part):
                exact[da] = db
            union(parent, da, db)
            edges += len(a)
    while True:  # full path compression: every entry points at its root
        nxt = parent[parent]
        if np.array_equal(nxt, parent):
            break
        parent = nxt
    size = np.bincount(parent, minlength=n)
    members = np.flatnonzero(size[parent] > 1)
    root = parent[members]
    ex = exact[members]
    ex_gid = np.where(ex >= 0, _gid(plan, np.maximum(ex, 0)), NONE).astype(np.uint64)
    table = pa.table({"root": root, "gid": _gid(plan, members), "exact": ex_gid}, schema=MEMBERS)
    member_part = (_mix64(root.astype(np.uint64)) % np.uint64(plan.member_parts)).astype(np.int64)
    spill.write_partitioned(plan.members(), table, member_part)
    return {
        "components": int((size > 1).sum()),
        "component_documents": int(len(members)),
        "largest_component_max": int(size.max()) if n else 0,
        "edges_unioned": edges,
    }


# --------------------------------------------------------------------------------------------------
# 4. decide


def _component(
    ids: list[str],
    recs: np.ndarray,
    exact_pos: np.ndarray,
    threshold: float,
    max_passes: int,
    batch: np.ndarray | None = None,
) -> tuple[list[tuple[int, dict[str, Any]]], dict[str, int]]:
    """``(member index, decision)`` for one component's members (``exact_pos[i]``: index of member i's exact survivor,
    or -1; ``batch[i]``: its input batch), with the chain statistics."""
    near = np.flatnonzero(exact_pos < 0)
    stats = {"survivor_comparisons": 0, "split_components": 0, "cut_members": 0, "unresolved": 0}
    out: dict[int, dict[str, Any]] = {}
    if len(near) == 1:
        i = int(near[0])
        out[i] = decision(ids[i], ids[i], "unique", 1.0)
    else:
        q = recs["quality"][near].tolist()
        order = survivor_order(
            [ids[i] for i in near],
            [None if math.isnan(x) else x for x in q],
            recs["length"][near].tolist(),
            None if batch is None else batch[near].tolist(),
        )
        res = survivor_clusters(order, recs["sig"][near], threshold, max_passes)
        size = np.bincount(res.survivor, minlength=len(near))
        for j, s in enumerate(res.survivor.tolist()):
            i, si = int(near[j]), int(near[s])
            out[i] = decision(ids[i], ids[si], "near" if size[s] > 1 else "unique", float(res.similarity[j]))
        first = int(order[0])
        stats["survivor_comparisons"] = int(res.comparisons)
        stats["split_components"] = int(res.passes > 1)
        stats["cut_members"] = int((res.survivor != first).sum())
        stats["unresolved"] = res.unresolved
    removed: dict[int, list[int]] = {}
    for i in np.flatnonzero(exact_pos >= 0).tolist():
        removed.setdefault(int(exact_pos[i]), []).append(i)
    decisions = [(i, out[i]) for i in near.tolist() if i not in removed]
    for s, rest in removed.items():
        decisions += list(zip([s, *rest], final_decisions(out[s], [ids[i] for i in rest]), strict=True))
    return decisions, stats


def decide_partition(q: int, plan: Plan) -> dict[str, Any]:
    """Step 4 for one member partition: decisions partitioned by split, and their statistics."""
    t = spill.read_partition([plan.members()], q, MEMBERS)
    root, gid, exact = (t.column(c).to_numpy() for c in ("root", "gid", "exact"))
    order = np.lexsort((gid, root))
    root, gid, exact = root[order], gid[order], exact[order]
    uniq, inverse = np.unique(gid, return_inverse=True)  # fetch wants sorted gids
    recs_u, ids_u = fetch(plan, uniq)
    recs, ids = recs_u[inverse], [ids_u[i] for i in inverse.tolist()]
    cuts = np.flatnonzero(np.diff(root)) + 1
    batches = plan.batches()[(gid >> np.uint64(ROW_BITS)).astype(np.int64)]
    rows: list[dict[str, Any]] = []
    where: list[int] = []
    stats: dict[str, Any] = {}
    for members in np.split(np.arange(len(gid)), cuts):
        if not len(members):
            continue
        ex = exact[members]
        # an exact survivor is in its duplicates' component, and gids are sorted within it
        exact_pos = np.where(ex == NONE, -1, np.searchsorted(gid[members], ex)).astype(np.int64)
        decided, st = _component(
            [ids[i] for i in members],
            recs[members],
            exact_pos,
            plan.cfg.threshold,
            plan.cfg.max_passes,
            batches[members],
        )
        stats = merge_stats([stats, st])
        where += [int(members[i]) for i, _ in decided]
        rows += [d for _, d in decided]
    chunk_of = (gid >> np.uint64(ROW_BITS)).astype(np.int64)
    in_chunk = (gid & np.uint64(ROW_MASK)).astype(np.int64)
    split = np.array([plan.chunks[c].split for c in range(len(plan.chunks))], dtype=np.int64)
    first_row = np.array([c.first_row for c in plan.chunks], dtype=np.int64)
    pos = np.array(where, dtype=np.int64)
    table = pa.table(
        {
            "row": first_row[chunk_of[pos]] + in_chunk[pos] if len(pos) else np.zeros(0, np.int64),
            "doc_id": [r["doc_id"] for r in rows],
            "cluster_id": [r["cluster_id"] for r in rows],
            "kind": [r["kind"] for r in rows],
            "similarity": [r["similarity"] for r in rows],
        },
        schema=DECISIONS,
    )
    spill.write_partitioned(
        plan.decisions(q), table, split[chunk_of[pos]] if len(pos) else np.zeros(0, np.int64)
    )
    return merge_stats([stats, cluster_stats(rows)])


def cluster_stats(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Size histogram, audit counts and the largest clusters of a set of complete clusters' decisions."""
    kept: dict[str, list[int]] = {}  # cluster id -> [members, members kept (named like the cluster)]
    for r in rows:
        k = kept.setdefault(r["cluster_id"], [0, 0])
        k[0] += 1
        k[1] += int(r["doc_id"] == r["cluster_id"])
    histogram: dict[str, int] = {}
    for size, _ in kept.values():
        histogram[str(size)] = histogram.get(str(size), 0) + 1
    largest = sorted(((k[0], cid) for cid, k in kept.items() if k[0] > 1), reverse=True)[:EXAMPLE_CLUSTERS]
    return {
        "cluster_size_histogram": histogram,
        "audit_clusters": len(kept),
        "audit_no_survivor": sum(1 for k in kept.values() if k[1] == 0),
        "audit_two_survivors": sum(1 for k in kept.values() if k[1] > 1),
        "largest_clusters": [[s, c] for s, c in largest],
    }


# --------------------------------------------------------------------------------------------------
# 5. per split


def split_decisions(plan: Plan, split: int) -> dict[int, tuple[str, str, float]]:
    """``row in split -> (cluster_id, kind, similarity)`` for the split's documents in components."""
    return decisions_by_row(split_decision_table(plan, split))


def split_decision_table(plan: Plan, split: int) -> pa.Table:
    """The decisions of the split's documents in components (``DECISIONS``)."""
    paths = [plan.decisions(q) for q in range(plan.member_parts)]
    return spill.read_partition(paths, split, DECISIONS)


def decisions_by_row(t: pa.Table) -> dict[int, tuple[str, str, float]]:
    """``row -> (cluster_id, kind, similarity)`` of a ``DECISIONS`` table."""
    return dict(
        zip(
            t.column("row").to_pylist(),
            zip(
                t.column("cluster_id").to_pylist(),
                t.column("kind").to_pylist(),
                t.column("similarity").to_pylist(),
                strict=True,
            ),
            strict=True,
        )
    )


def merge_stats(parts: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Combine task statistics: numbers add (``*_max`` take the maximum), histograms add per key,
    ``largest_clusters`` keeps the largest ``EXAMPLE_CLUSTERS`` by (size, cluster id)."""
    out: dict[str, Any] = {}
    for p in parts:
        for k, v in p.items():
            if k == "largest_clusters":
                out[k] = sorted([*out.get(k, []), *v], key=lambda sc: (sc[0], sc[1]), reverse=True)[
                    :EXAMPLE_CLUSTERS
                ]
            elif isinstance(v, dict):
                h = out.setdefault(k, {})
                for kk, vv in v.items():
                    h[kk] = h.get(kk, 0) + vv
            elif k.endswith("_max"):
                out[k] = max(out.get(k, v), v)
            else:
                out[k] = out.get(k, 0) + v
    return out
