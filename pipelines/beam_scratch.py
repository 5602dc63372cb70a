"""Scratch tables between the pipelines of one stage (iterations that a single pipeline cannot loop on).

A pipeline writes rows with :class:`WriteScratch` (one Parquet file per bundle, through
``storage.ShardWriter``, so local paths and object stores both work); the driver starts the next
pipeline, whose :class:`ReadScratch` lists the files at construction time and streams them
(``Create(files) | Reshuffle | FlatMap(read)``). Scratch lives under the uncommitted version directory
(:func:`create` it before the first pipeline) and is removed by the stage before it commits
(:func:`remove`). Row order and file names carry no
meaning, and a runner that re-executes a bundle whose file was already written (a retry, a worker
lost after the write) leaves that bundle's rows twice: consumers must be idempotent (the dedup job
keeps the first near input per document and a set of exact pairs; edges are sets per node anyway).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Mapping
from typing import Any

import apache_beam as beam
import pyarrow as pa

from pipelines import fs, storage

ROW_GROUP_ROWS = 8192


def _no_summary(row: Mapping[str, Any]) -> dict[str, float]:
    return {}


class _WriteScratchFn(beam.DoFn):
    """Rows -> one Parquet file per bundle under ``directory`` (a fresh name per bundle attempt)."""

    def __init__(self, directory: str, schema: pa.Schema) -> None:
        self.directory = directory
        self.schema = schema
        self._writer: storage.ShardWriter | None = None

    def start_bundle(self) -> None:
        self._writer = None

    def process(self, row: Mapping[str, Any]) -> None:
        if self._writer is None:
            self._writer = storage.ShardWriter(
                self.directory,
                uuid.uuid4().hex,
                self.schema,
                max_shard_bytes=1 << 62,
                row_group_rows=ROW_GROUP_ROWS,
                summarize=_no_summary,
            )
        self._writer.write(row)

    def finish_bundle(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


class WriteScratch(beam.PTransform):
    """Write a PCollection of row dicts (``schema``'s columns) as a scratch table in ``directory``."""

    def __init__(self, directory: str, schema: pa.Schema) -> None:
        super().__init__()
        self._directory = directory
        self._schema = schema

    def expand(self, rows: beam.PCollection) -> beam.PCollection:
        return rows | "Write" >> beam.ParDo(_WriteScratchFn(self._directory, self._schema))


def files(directory: str) -> list[str]:
    """The files of a scratch table, sorted (none when nothing was written)."""
    entry = storage.collect_shards(fs.path(directory))
    return [fs.uri(fs.path(directory) / s["path"]) for s in entry["shards"]]


def _read(path: str, columns: list[str] | None) -> Iterator[dict]:
    yield from storage.iter_rows(path, columns=columns)


class ReadScratch(beam.PTransform):
    """The rows of the scratch table in ``directory`` (listed when the pipeline is built)."""

    def __init__(self, directory: str, columns: list[str] | None = None) -> None:
        super().__init__()
        self._directory = directory
        self._columns = columns

    def expand(self, pbegin: beam.pvalue.PBegin) -> beam.PCollection:
        return (
            pbegin
            | "Files" >> beam.Create(files(self._directory))
            | "Distribute" >> beam.Reshuffle()
            | "Read" >> beam.FlatMap(_read, self._columns)
        )


def create(directory: str) -> None:
    """Create the scratch directory (under an existing version directory) before a pipeline writes
    tables into it; a table is a sub-directory."""
    fs.mkdirs(fs.path(directory))


def remove(directory: str) -> None:
    """Delete a scratch directory (and every table under it)."""
    fs.rmtree(fs.path(directory))
