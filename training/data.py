"""Reader of packed token shards for training and evaluation.

A token dataset is a directory with ``manifest.json`` (format ``corpusforge-tokens/1``) and, per
split, Arrow IPC files whose single column ``tokens`` is a fixed-size list of ``seq_len + 1``
uint16/uint32 ids, one packed window per row; :mod:`training.token_format` defines the format and
holds the low-level shard reader this module builds on.

Order. A training epoch visits the split's sequences in ``numpy.random.default_rng([seed,
epoch]).permutation(N)``; evaluation reads them in file order. The order is cut into *units* of
``batch_size`` sequences (one sequence when ``batch_size`` is None). Unit ``g`` belongs to rank
``g % world_size``; a rank's ``m``-th unit is unit ``m * world_size + rank``, and its DataLoader
workers take turns (worker ``w`` of ``W`` reads the rank's units ``w, w + W, ...`` counted from
where the iterator starts), which is exactly the order in which an in-order ``DataLoader`` hands
them back. So with one sequence per
unit, rank r / worker w reads every (R*W)-th index of the permuted order, and at any step the
units consumed by all ranks together are a prefix of the epoch's order. Training epochs drop the
last ``N mod (batch_size * world_size)`` sequences of each permutation so every rank gets the same
number of batches (a different tail each epoch); evaluation keeps every sequence.

State. ``state_dict`` is ``{"epoch", "position"}`` with ``position`` the number of sequences of
the epoch's order consumed by all ranks together; loading it makes the iterator yield exactly the
rest of the order, for any worker count and for any ``batch_size * world_size`` that divides it.

Memory. Shards are memory-mapped and opened with ``ipc.open_file``; rows are read through numpy
views without copying. Pages touched through a mapping stay in the process's RSS until they are
unmapped (the nanoGPT ``np.memmap`` growth), and the kernel maps far more than the row itself
around each fault (fault-around and large page-cache folios: about 360 KiB per random 2 KiB row
measured on Linux 6.18/ext4). So the reader watches its file-backed RSS (``/proc/self/statm``;
elsewhere it assumes 512 KiB per row) and, once it has grown by ``remap_bytes`` since the last
release, drops the shards' resident pages with ``madvise(MADV_DONTNEED)``: the mapped RSS stays
within about ``1.25 * remap_bytes + 8 MiB`` whatever the dataset size.
"""

from __future__ import annotations

import bisect
import math
import mmap
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from training.token_format import (
    DTYPES,
    FORMAT,
    MappedShard,
    TokenDataError,
    entry_path,
    file_sha256,
    read_manifest,
    shard_batch_rows,
    write_token_dataset,
)

__all__ = [
    "FORMAT",
    "TokenDataError",
    "TokenDataset",
    "TokenLoader",
    "file_sha256",
    "read_manifest",
    "write_token_dataset",
]

DEFAULT_REMAP_BYTES = 64 * 1024 * 1024
ROW_RSS_ESTIMATE = 512 * 1024  # resident bytes assumed per row read where /proc/self/statm is missing
PAGE_SIZE = mmap.PAGESIZE


def _file_rss_bytes() -> int | None:
    """File-backed + shared resident bytes of this process (Linux), else None."""
    try:
        with open("/proc/self/statm", "rb") as fh:
            return int(fh.read().split()[2]) * PAGE_SIZE
    except (OSError, IndexError, ValueError):
        return None


class TokenDataset(IterableDataset):
    """Iterable over one split of a token dataset, yielding ``torch.int64`` windows.

    Yields tensors of shape ``(seq_len + 1,)``, or ``(batch_size, seq_len + 1)`` when
    ``batch_size`` is given (use ``DataLoader(dataset, batch_size=None)`` or :class:`TokenLoader`).
    ``shuffle`` defaults to True for ``train`` and False otherwise; ``epochs`` to unlimited when
    shuffling and one pass otherwise. ``verify`` also checks sha256 sums and token id range.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        split: str = "train",
        *,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        batch_size: int | None = None,
        shuffle: bool | None = None,
        epochs: int | None = None,
        verify: bool = False,
        remap_bytes: int = DEFAULT_REMAP_BYTES,
    ) -> None:
        super().__init__()
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is outside world_size {world_size}")
        if seed < 0:
            raise ValueError("seed must be >= 0")
        self.root = Path(path)
        self.manifest = read_manifest(self.root)
        splits = self.manifest["splits"]
        if split not in splits:
            raise TokenDataError(f"{self.root / 'manifest.json'}: no split {split!r} (has {sorted(splits)})")
        self.split, self.seed, self.rank, self.world_size = split, seed, rank, world_size
        self.seq_len = int(self.manifest["seq_len"])
        self.window = self.seq_len + 1
        self.np_dtype = DTYPES[self.manifest["dtype"]]
        self.vocab_size = int(self.manifest["vocab_size"])
        self.batch_size = batch_size
        self.unit = batch_size or 1
        if self.unit < 1:
            raise ValueError("batch_size must be >= 1")
        self.shuffle = (split == "train") if shuffle is None else shuffle
        self.epochs = (None if self.shuffle else 1) if epochs is None else epochs
        self.remap_bytes = remap_bytes
        self._check_every = max(16, remap_bytes // (4 * ROW_RSS_ESTIMATE))  # reading statm costs ~0.1 ms
        self._perm: np.ndarray | None = None
        self._perm_epoch: int | None = None
        self._rows_since_check = self._rows_unreleased = 0

        self.shard_paths: list[Path] = []
        starts, self._chunk_loc = [0], []
        for shard in splits[split].get("shards", []):
            shard_path = entry_path(self.root, shard)
            rows = shard_batch_rows(shard_path, self.manifest["dtype"], self.window)
            if sum(rows) != int(shard["sequences"]):
                raise TokenDataError(
                    f"token shard {shard_path} holds {sum(rows)} sequences but manifest.json lists "
                    f"{shard['sequences']}; the shard is truncated or the manifest is stale"
                )
            for b, n in enumerate(rows):
                if n:
                    self._chunk_loc.append((len(self.shard_paths), b))
                    starts.append(starts[-1] + n)
            self.shard_paths.append(shard_path)
            if verify:
                self._verify_shard(shard_path, shard.get("sha256"))
        self._starts = starts
        self.num_sequences = int(starts[-1])
        declared = splits[split].get("sequences")
        if declared is not None and int(declared) != self.num_sequences:
            raise TokenDataError(
                f"{self.root / 'manifest.json'}: split {split!r} declares {declared} sequences, "
                f"its shards hold {self.num_sequences}"
            )
        if self.shuffle:
            self.units_per_epoch = (self.num_sequences // self.unit // world_size) * world_size
            if self.units_per_epoch == 0:
                raise TokenDataError(
                    f"split {split!r} has {self.num_sequences} sequences, fewer than batch_size x world_size "
                    f"= {self.unit * world_size}"
                )
        else:
            self.units_per_epoch = math.ceil(self.num_sequences / self.unit)
        self.local_units = len(range(rank, self.units_per_epoch, world_size))
        self._start = 0  # absolute index of this rank's next unit, counted over all epochs
        self._reset_cache()

    # ---------------------------------------------------------------------------------------- state

    def state_dict(self, consumed: int = 0) -> dict[str, Any]:
        """Reader state after this rank has taken ``consumed`` more units since the last load."""
        epoch, m = divmod(self._start + consumed, max(self.local_units, 1))
        return {
            "epoch": int(epoch),
            "position": int(m * self.world_size * self.unit),
            "seed": self.seed,
            "sequences": self.num_sequences,
            "split": self.split,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Continue from ``state`` (see :meth:`state_dict`)."""
        if int(state.get("sequences", self.num_sequences)) != self.num_sequences:
            raise TokenDataError(
                f"reader state is for a split of {state['sequences']} sequences, this one has {self.num_sequences}"
            )
        if self.shuffle and int(state.get("seed", self.seed)) != self.seed:
            raise TokenDataError(
                f"reader state was shuffled with seed {state['seed']}, this reader uses {self.seed}"
            )
        units, rest = divmod(int(state["position"]), self.unit)
        if rest or units % self.world_size:
            raise TokenDataError(
                f"reader position {state['position']} is not a multiple of batch_size x world_size "
                f"= {self.unit * self.world_size}; resume with the batch size and world size it was saved with"
            )
        m = units // self.world_size
        if m > self.local_units:
            raise TokenDataError(f"reader position {state['position']} is past the end of the epoch")
        self._start = int(state["epoch"]) * self.local_units + m

    # ------------------------------------------------------------------------------------ iteration

    def __iter__(self):
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        if self.local_units == 0:
            return
        self._rss_base = _file_rss_bytes()  # this process's own baseline (workers are new processes)
        first_epoch = self._start // self.local_units
        end = None if self.epochs is None else (first_epoch + self.epochs) * self.local_units
        a = self._start + worker
        while end is None or a < end:
            epoch, m = divmod(a, self.local_units)
            indices = self._unit_indices(epoch, m)
            if self.batch_size:
                yield torch.from_numpy(self._gather(indices))
            else:
                row = self._row(int(indices[0])).astype(np.int64)
                self._after_rows(1)
                yield torch.from_numpy(row)
            a += workers

    def _unit_indices(self, epoch: int, m: int) -> np.ndarray:
        g = m * self.world_size + self.rank
        lo, hi = g * self.unit, min((g + 1) * self.unit, self.num_sequences)
        if not self.shuffle:
            return np.arange(lo, hi, dtype=np.int64)
        if self._perm_epoch != epoch:
            rng = np.random.default_rng([self.seed, epoch])
            self._perm, self._perm_epoch = rng.permutation(self.num_sequences), epoch
        assert self._perm is not None
        return self._perm[lo:hi]

    def read(self, indices: np.ndarray | list[int]) -> np.ndarray:
        """Windows at global ``indices`` of the split, as an int64 array (n, seq_len + 1)."""
        return self._gather(np.asarray(indices, dtype=np.int64))

    def _row(self, i: int) -> np.ndarray:
        """Zero-copy view of global row ``i``."""
        c = bisect.bisect_right(self._starts, i) - 1
        shard, batch = self._chunk_loc[c]
        mapped = self._shards.get(shard)
        if mapped is None:
            mapped = self._shards[shard] = MappedShard(self.shard_paths[shard])
        return mapped.view(batch, self.window)[i - self._starts[c]]

    def _gather(self, idx: np.ndarray) -> np.ndarray:
        out = np.empty((len(idx), self.window), dtype=np.int64)
        for k, i in enumerate(idx.tolist()):
            out[k] = self._row(i)
        self._after_rows(len(idx))
        return out

    def _after_rows(self, n: int) -> None:
        """Every few rows, release the mapped pages once RSS grew by ``remap_bytes``."""
        if not self.remap_bytes:
            return
        self._rows_since_check += n
        if self._rows_since_check < self._check_every:
            return
        self._rows_unreleased += self._rows_since_check
        self._rows_since_check = 0
        rss = _file_rss_bytes()
        if self._rss_base is None or rss is None:
            grown = self._rows_unreleased * ROW_RSS_ESTIMATE
        else:
            grown = rss - self._rss_base
        if grown >= self.remap_bytes:
            self._release_pages()

    def _release_pages(self) -> None:
        for shard in list(self._shards.values()):
            if not shard.release():
                shard.close()
                self._shards.clear()
                break
        self._rows_unreleased = 0
        self._rss_base = _file_rss_bytes()

    def _reset_cache(self, keep_perm: bool = False) -> None:
        """Unmap every shard."""
        for shard in getattr(self, "_shards", {}).values():
            shard.close()
        self._shards: dict[int, MappedShard] = {}
        self._rows_since_check = self._rows_unreleased = 0
        self._rss_base = _file_rss_bytes()
        if not keep_perm:
            self._perm, self._perm_epoch = None, None

    def close(self) -> None:
        self._reset_cache()

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state.update(_shards={}, _perm=None, _perm_epoch=None, _rows_since_check=0, _rows_unreleased=0)
        return state

    def _verify_shard(self, path: Path, sha256: str | None) -> None:
        if sha256 and file_sha256(path) != sha256:
            raise TokenDataError(
                f"token shard {path}: sha256 does not match manifest.json (corrupt or replaced)"
            )
        shard = MappedShard(path)
        try:
            for b in range(shard.reader.num_record_batches):
                view = shard.view(b, self.window)
                if view.size and int(view.max()) >= self.vocab_size:
                    raise TokenDataError(
                        f"token shard {path}: token id {int(view.max())} >= vocab_size {self.vocab_size}"
                    )
                del view
                shard.views.clear()
        finally:
            shard.close()


class TokenLoader:
    """Batches of a :class:`TokenDataset` through a ``DataLoader``, counting what was consumed.

    ``state_dict()`` is the dataset state after the batches handed out so far (prefetched but
    unconsumed batches are not counted), so a checkpoint taken between steps resumes exactly.
    """

    def __init__(
        self,
        dataset: TokenDataset,
        *,
        num_workers: int = 0,
        pin_memory: bool = False,
        prefetch_factor: int = 4,
    ) -> None:
        self.dataset, self.num_workers = dataset, num_workers
        self.pin_memory, self.prefetch_factor = pin_memory, prefetch_factor
        self._it: Any = None
        self._consumed = 0

    def __iter__(self) -> TokenLoader:
        return self

    def __next__(self) -> torch.Tensor:
        if self._it is None:
            loader = DataLoader(
                self.dataset,
                batch_size=None,
                num_workers=self.num_workers,
                pin_memory=self.pin_memory,
                prefetch_factor=self.prefetch_factor if self.num_workers else None,
            )
            self._it = iter(loader)
        batch = next(self._it)
        self._consumed += 1
        return batch

    def state_dict(self) -> dict[str, Any]:
        return self.dataset.state_dict(self._consumed)

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.close()
        self.dataset.load_state_dict(state)
        self._consumed = 0

    def close(self) -> None:
        self._it = None  # the DataLoader iterator shuts its workers down when collected
