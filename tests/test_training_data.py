"""Token shard reader: coverage across ranks and DataLoader workers, resume, corruption, memory."""

from __future__ import annotations

import json
import os
from collections import Counter

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from training.data import TokenDataError, TokenDataset, TokenLoader, read_manifest, write_token_dataset

SEQ = 8
N = 200


def windows(n: int, seq_len: int = SEQ, offset: int = 0) -> np.ndarray:
    """Row i starts with its own index, so every window can be identified."""
    rows = np.arange(offset, offset + n)[:, None] + np.zeros((1, seq_len + 1), dtype=np.int64)
    rows[:, 1:] = (rows[:, 1:] * 7 + np.arange(1, seq_len + 1)) % 60_000
    return rows


@pytest.fixture
def data_dir(tmp_path):
    # 5 shards of <= 45 rows, record batches of 10 (the last ones short): exercises every boundary.
    return write_token_dataset(
        tmp_path / "tokens",
        {"train": windows(N), "val": windows(23, offset=1000)},
        vocab_size=65_000,
        sequences_per_shard=45,
        rows_per_batch=10,
    )


def ids(batch: torch.Tensor) -> list[int]:
    return batch.reshape(-1, SEQ + 1)[:, 0].tolist()


def test_manifest_and_rows_round_trip(data_dir):
    manifest = read_manifest(data_dir)
    assert manifest["splits"]["train"]["sequences"] == N
    ds = TokenDataset(data_dir, "val", verify=True)
    got = torch.stack(list(ds))
    assert got.dtype == torch.int64 and got.shape == (23, SEQ + 1)
    assert np.array_equal(got.numpy(), windows(23, offset=1000))  # fixed file order for validation


@pytest.mark.parametrize("batch_size", [None, 4])
def test_each_sequence_once_per_epoch_across_two_ranks_and_two_workers(data_dir, batch_size):
    seen, per_rank = Counter(), {}
    for rank in range(2):
        ds = TokenDataset(data_dir, "train", seed=5, rank=rank, world_size=2, batch_size=batch_size, epochs=1)
        loader = DataLoader(ds, batch_size=None, num_workers=2)
        per_rank[rank] = [i for b in loader for i in ids(b)]
        seen.update(per_rank[rank])
    assert sorted(seen) == list(range(N)) and set(seen.values()) == {1}
    # The documented order: the epoch permutation cut into units, unit g to rank g % 2.
    perm = np.random.default_rng([5, 0]).permutation(N)
    unit = batch_size or 1
    units = perm.reshape(-1, unit)
    assert per_rank[0] == units[0::2].reshape(-1).tolist()
    assert per_rank[1] == units[1::2].reshape(-1).tolist()


def test_tail_that_does_not_fill_a_global_batch_is_dropped(data_dir):
    seen = Counter()
    for rank in range(2):
        ds = TokenDataset(data_dir, "train", seed=5, rank=rank, world_size=2, batch_size=3, epochs=1)
        seen.update(i for b in ds for i in ids(b))
    assert len(seen) == (N // 6) * 6 == 198 and set(seen.values()) == {1}


def test_epochs_reshuffle_deterministically(data_dir):
    def first_two_epochs(seed):
        ds = TokenDataset(data_dir, "train", seed=seed, epochs=2)
        return [ids(x)[0] for x in ds]

    a = first_two_epochs(3)
    assert a == first_two_epochs(3)
    assert sorted(a[:N]) == sorted(a[N:]) == list(range(N))
    assert a[:N] != a[N:]
    assert a[:N] != first_two_epochs(4)[:N]


@pytest.mark.parametrize(("world", "workers_before", "workers_after"), [(1, 2, 0), (2, 0, 2)])
def test_resume_mid_epoch_yields_exactly_the_uninterrupted_tail(
    data_dir, world, workers_before, workers_after
):
    total, cut = 70, 17  # batches per rank; crosses the epoch boundary (N / (4 * world) per epoch)
    for rank in range(world):

        def loader(workers, rank=rank):
            ds = TokenDataset(data_dir, "train", seed=9, rank=rank, world_size=world, batch_size=4)
            return TokenLoader(ds, num_workers=workers)

        it = loader(0)
        full = [ids(next(it)) for _ in range(total)]
        first = loader(workers_before)
        head = [ids(next(first)) for _ in range(cut)]
        state = json.loads(json.dumps(first.state_dict()))  # must survive JSON (checkpoints)
        first.close()
        resumed = loader(workers_after)
        resumed.load_state_dict(state)
        tail = [ids(next(resumed)) for _ in range(total - cut)]
        resumed.close()
        assert head + tail == full
    assert state["position"] == cut * 4 * world and state["epoch"] == 0


def test_state_from_other_batch_geometry_is_rejected(data_dir):
    ds = TokenDataset(data_dir, "train", seed=1, batch_size=4)
    with pytest.raises(TokenDataError, match="multiple of batch_size x world_size"):
        ds.load_state_dict({"epoch": 0, "position": 6, "seed": 1, "sequences": N})
    with pytest.raises(TokenDataError, match="seed"):
        ds.load_state_dict({"epoch": 0, "position": 8, "seed": 2, "sequences": N})
    ds.load_state_dict({"epoch": 1, "position": 8, "seed": 1, "sequences": N})  # 8 = 2 batches of 4: fine
    assert ds.state_dict()["epoch"] == 1 and ds.state_dict()["position"] == 8


def test_missing_shard_names_the_file(data_dir):
    (data_dir / "train" / "part-00002.arrow").unlink()
    with pytest.raises(TokenDataError, match=r"part-00002\.arrow does not exist"):
        TokenDataset(data_dir, "train")


def test_truncated_shard_is_detected_by_row_count(data_dir, tmp_path):
    other = write_token_dataset(
        tmp_path / "short", {"train": windows(30)}, vocab_size=65_000, rows_per_batch=10
    )
    (data_dir / "train" / "part-00001.arrow").write_bytes((other / "train" / "part-00000.arrow").read_bytes())
    with pytest.raises(
        TokenDataError, match=r"part-00001\.arrow holds 30 sequences but manifest\.json lists 45"
    ):
        TokenDataset(data_dir, "train")


def test_garbage_and_empty_shards_name_the_file(data_dir):
    (data_dir / "train" / "part-00000.arrow").write_bytes(b"not arrow at all" * 10)
    with pytest.raises(TokenDataError, match=r"part-00000\.arrow is not a readable Arrow IPC file"):
        TokenDataset(data_dir, "train")
    (data_dir / "train" / "part-00000.arrow").write_bytes(b"")
    with pytest.raises(TokenDataError, match=r"part-00000\.arrow cannot be memory-mapped"):
        TokenDataset(data_dir, "train")


def test_flipped_token_byte_needs_verify_to_be_caught(data_dir):
    path = data_dir / "train" / "part-00003.arrow"
    blob = bytearray(path.read_bytes())
    # The token of row 135 (= 3 * 45) at position 0 is 135 (uint16 little-endian); flip it.
    at = blob.find(np.array([135, (135 * 7 + 1) % 60_000], dtype=np.uint16).tobytes())
    assert at > 0
    blob[at] ^= 0xFF
    path.write_bytes(bytes(blob))
    TokenDataset(data_dir, "train")  # structurally fine
    with pytest.raises(TokenDataError, match=r"part-00003\.arrow: sha256 does not match"):
        TokenDataset(data_dir, "train", verify=True)


def test_verify_checks_token_ids_against_vocab(data_dir):
    manifest = json.loads((data_dir / "manifest.json").read_text())
    manifest["vocab_size"] = 150
    for shard in manifest["splits"]["train"]["shards"]:
        shard.pop("sha256")
    (data_dir / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(TokenDataError, match=r"token id \d+ >= vocab_size 150"):
        TokenDataset(data_dir, "train", verify=True)


def test_manifest_problems(tmp_path, data_dir):
    with pytest.raises(TokenDataError, match="manifest not found"):
        TokenDataset(tmp_path / "nowhere")
    manifest = json.loads((data_dir / "manifest.json").read_text())
    with pytest.raises(TokenDataError, match="no split 'test'"):
        TokenDataset(data_dir, "test")
    manifest["format"] = "something-else/2"
    (data_dir / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(TokenDataError, match="format is 'something-else/2'"):
        read_manifest(data_dir)


def test_split_smaller_than_a_global_batch_is_an_error(data_dir):
    with pytest.raises(TokenDataError, match="fewer than batch_size x world_size"):
        TokenDataset(data_dir, "train", batch_size=64, world_size=4)


def test_uint32_shards(tmp_path):
    rows = windows(12) + 70_000
    path = write_token_dataset(tmp_path / "t32", {"train": rows}, vocab_size=80_000, dtype="uint32")
    got = torch.stack(list(TokenDataset(path, "train", shuffle=False, verify=True)))
    assert np.array_equal(got.numpy(), rows)


def _file_rss_mb() -> float:
    with open("/proc/self/statm") as fh:  # third field: file-backed resident pages
        return int(fh.read().split()[2]) * os.sysconf("SC_PAGE_SIZE") / 2**20


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs Linux /proc")
def test_mapped_rss_stays_bounded(tmp_path):
    rng = np.random.default_rng(0)
    rows = rng.integers(3, 32_000, size=(16_000, 1025), dtype=np.uint16)  # 33 MB of shards
    path = write_token_dataset(tmp_path / "big", {"train": rows}, vocab_size=32_000, sequences_per_shard=4000)

    def growth(remap_bytes):
        ds = TokenDataset(path, "train", seed=1, batch_size=16, epochs=1, remap_bytes=remap_bytes)
        it = iter(ds)
        next(it)  # first batch: library code pages, shard footers
        start, worst = _file_rss_mb(), 0.0
        for k, _ in enumerate(it):
            if k % 20 == 0:
                worst = max(worst, _file_rss_mb() - start)
        ds.close()
        return worst

    bounded, unbounded = growth(8 << 20), growth(0)
    assert bounded < 14  # 8 MiB budget (measured 7.9 MB on Linux 6.18)
    assert unbounded > 18  # without releasing, random reads keep most of the 33 MB mapped (22.8 MB)
