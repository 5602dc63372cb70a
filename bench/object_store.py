"""The data job with input and outputs on a local S3 API vs on local disk; one JSON line.

Builds a corpus with ``bench/make_text_corpus.py`` (``--mb``), starts moto's S3 server on 127.0.0.1
(``tests/s3_server.py``), uploads the corpus, then runs ``corpusforge run --select <data stages>``
twice as separate processes (whole-process wall time, start-up included): local input + local data
directory, then ``s3://`` input + ``s3://`` data directory. Same runner (FnApiRunner, 2 workers)
and config. Checks that both runs committed identical shards.

Usage: ``python bench/object_store.py --mb 50 --work /tmp/s3bench``
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

DATA_STAGES = "raw,clean,dedup,filtered,tokenizer,tokens"


def _run(args: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "assets.cli", "run", *args, "--select", DATA_STAGES],
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return time.perf_counter() - start


def _shards(data_dir: str) -> dict[str, list[str]]:
    from pipelines import storage

    out = {}
    for stage in DATA_STAGES.split(","):
        m = storage.current_version(data_dir, stage).manifest()
        shas = [
            s["sha256"]
            for k in ("documents", "ledger", "clusters")
            for s in (m.get(k) or {}).get("shards", [])
        ]
        if isinstance(m.get("splits"), dict):
            shas += [s["sha256"] for v in m["splits"].values() for s in v["shards"]]
        out[stage] = shas
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mb", type=float, default=50.0)
    ap.add_argument("--work", type=Path, default=Path("/tmp/s3bench"))
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    corpus = args.work / "corpus"
    if not (corpus / "corpus.json").is_file():
        subprocess.run(
            [
                sys.executable,
                str(REPO / "bench" / "make_text_corpus.py"),
                "--out",
                str(corpus),
                "--mb",
                str(args.mb),
            ],
            check=True,
        )
    config = args.work / "config.yaml"
    config.write_text("tokenizer:\n  vocab_size: 8192\ntokens:\n  seq_len: 512\n")
    from tests.s3_server import s3_server

    with s3_server() as server:
        import s3fs

        s3 = s3fs.S3FileSystem(client_kwargs={"endpoint_url": server["endpoint"]})
        s3.mkdir("bench")
        s3.put(str(corpus), "bench/corpus", recursive=True)
        env = {**os.environ, **server["env"], "DAGSTER_HOME": str(args.work / "home")}
        common = ["--config", str(config), "--workers", str(args.workers)]
        local_dir = str(args.work / "data")
        local_s = _run([*common, "--input", str(corpus), "--data-dir", local_dir], env)
        s3_s = _run([*common, "--input", "s3://bench/corpus", "--data-dir", "s3://bench/data"], env)
        os.environ.update(server["env"])
        identical = _shards(local_dir) == _shards("s3://bench/data")
    meta = json.loads((corpus / "corpus.json").read_text())
    print(
        json.dumps(
            {
                "bench": "object_store",
                "corpus_mb": args.mb,
                "documents": meta.get("documents"),
                "stages": DATA_STAGES,
                "workers": args.workers,
                "local_wall_s": round(local_s, 1),
                "s3_wall_s": round(s3_s, 1),
                "ratio": round(s3_s / local_s, 3),
                "target_ratio_max": 1.5,
                "identical_shards": identical,
                "s3_server": "moto (in-process Python S3 API on 127.0.0.1)",
                "cpus": os.cpu_count(),
                "machine": platform.platform(),
            }
        )
    )


if __name__ == "__main__":
    main()
