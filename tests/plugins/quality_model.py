"""A tiny model-based quality filter as a cleaning plug-in: logistic regression on hashed words.

Named in config, with the path of its trained weights::

    clean:
      rules: [normalize, langid, quality_model, gopher_repetition, gopher_quality, c4, fineweb, pii]
      plugins:
        quality_model:
          class: tests.plugins.quality_model:Scorer
          settings: {weights: /models/quality.npz, threshold: 0.5}
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from pipelines.cleaning.rules import Decision
from pipelines.text.analysis import TextAnalysis
from pipelines.text.words import tokenize_words

REASON = "quality_model:low-score"


def features(words: Sequence[str], dim: int) -> np.ndarray:
    """Word frequencies hashed into ``dim`` buckets (crc32: the same in every process)."""
    x = np.zeros(dim)
    for w in words:
        x[zlib.crc32(w.lower().encode()) % dim] += 1.0
    return x / max(len(words), 1)


def train(texts: Sequence[str], labels: Sequence[int], path: str, dim: int = 256, steps: int = 500) -> None:
    """Fit a logistic regression (label 1 = good text) by gradient descent; save ``w``, ``b`` to ``path``."""
    x = np.stack([features(tokenize_words(t, False), dim) for t in texts])
    y = np.asarray(labels, dtype=float)
    w, b = np.zeros(dim), 0.0
    for _ in range(steps):
        p = 1.0 / (1.0 + np.exp(-(x @ w + b)))
        w -= 5.0 * (x.T @ (p - y) / len(y))
        b -= 5.0 * float(np.mean(p - y))
    np.savez(path, w=w, b=np.array(b))


class Scorer:
    """Removes documents whose predicted probability of being good text is under ``threshold``."""

    built = 0  # instances constructed (tests check that a worker builds its rules once)

    def __init__(self, weights: str, threshold: float = 0.5) -> None:
        model = np.load(weights)  # loaded once per worker, when the rules are built
        self.w, self.b = model["w"], float(model["b"])
        self.threshold = threshold
        type(self).built += 1

    def apply(self, doc: Mapping[str, Any], analysis: TextAnalysis) -> Decision:
        z = float(features(analysis.words, self.w.size) @ self.w) + self.b
        score = 1.0 / (1.0 + math.exp(-z))
        signals = {"quality_model.score": score}
        if score < self.threshold:
            return Decision(REASON, f"score {score:.3f} < threshold {self.threshold}", signals)
        return Decision(signals=signals)
