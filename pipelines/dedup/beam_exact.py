"""Exact duplicates in Beam: ``ExactDuplicates``, the transform form of ``exact.py``."""

from __future__ import annotations

import apache_beam as beam

from pipelines.dedup.exact import exact_key, group_decisions, group_key


class ExactDuplicates(beam.PTransform):
    """PCollection of ``(doc_id, text, quality)`` -> one decision dict per document.

    Only ``(hash, (doc_id, quality, length))`` tuples are shuffled, never the texts.
    """

    def __init__(self, lowercase: bool = True, strip_punct: bool = True) -> None:
        super().__init__()
        self._lowercase = lowercase
        self._strip_punct = strip_punct

    def expand(self, docs):
        lowercase, strip_punct = self._lowercase, self._strip_punct
        return (
            docs
            | "KeyByTextHash"
            >> beam.Map(
                lambda d: (group_key(exact_key(d[1], lowercase, strip_punct), d[0]), (d[0], d[2], len(d[1])))
            )
            | "GroupByHash" >> beam.GroupByKey()
            | "Survivor" >> beam.FlatMap(lambda kv: group_decisions(kv[1]))
        )
