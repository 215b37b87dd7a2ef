"""The trained text model: multi-label sequence classification over the subcategories.

A small BERT (transformers) trained from scratch by ``scripts/train_classifier.py`` on the
project's corpus, or any pretrained Chinese checkpoint fine-tuned with ``--base-model``.
The model reads a pair: the normalised characters, and their toneless pinyin.  The pinyin
half is what keeps it steady when ASR writes the right sound with the wrong characters
(包制摆病, 头包): those characters may be rare or unseen, their syllables are not.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from pipeline.classify.phonetic import sounds
from pipeline.classify.taxonomy import CODES

log = logging.getLogger(__name__)

MAX_LENGTH = 128


def model_inputs(normalised: str) -> tuple[str, str]:
    """The (characters, pinyin) pair the model reads for an already normalised text."""
    chars = " ".join(normalised)  # one token per character, also for latin and digits
    pinyin = " ".join(s for s, _, _ in sounds(normalised) if s.isalpha() and s.isascii())
    return chars, pinyin


class TextModel:
    """Loads a saved model folder once; ``predict`` returns a probability per code."""

    def __init__(self, path: str | Path, threads: int | None = None) -> None:
        self.path = Path(path)
        self.threads = threads
        self.model = None
        self.tokenizer = None
        self.codes: list[str] = []
        self.version = ""
        self.fusion: dict = {}

    def setup(self) -> None:
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        if not (self.path / "config.json").is_file():
            raise FileNotFoundError(
                f"{self.path}: no trained classifier here (config.json missing); "
                "train one with scripts/train_classifier.py or set classifier.model_dir: null"
            )
        if self.threads:
            torch.set_num_threads(self.threads)
        self.tokenizer = AutoTokenizer.from_pretrained(str(self.path))
        self.model = AutoModelForSequenceClassification.from_pretrained(
            str(self.path), torch_dtype=torch.float32
        )
        self.model.eval()
        id2label = self.model.config.id2label
        self.codes = [id2label[i] for i in range(len(id2label))]
        unknown = set(self.codes) - set(CODES)
        if unknown:
            raise ValueError(f"{self.path}: model labels outside the taxonomy: {sorted(unknown)}")
        meta = self.path / "training.json"
        info = json.loads(meta.read_text(encoding="utf-8")) if meta.is_file() else {}
        self.version = info.get("version") or f"model-{self.path.name}"
        self.fusion = info.get("fusion", {})  # thresholds tuned on the dev split

    def predict(self, normalised: list[str], batch_size: int = 64) -> list[dict[str, float]]:
        """Probabilities per code for each (already normalised) text."""
        import torch

        if self.model is None:
            self.setup()
        out: list[dict[str, float]] = []
        for i in range(0, len(normalised), batch_size):
            pairs = [model_inputs(t) for t in normalised[i : i + batch_size]]
            enc = self.tokenizer(
                [a for a, _ in pairs],
                [b for _, b in pairs],
                truncation=True,
                max_length=MAX_LENGTH,
                padding=True,
                return_tensors="pt",
            )
            with torch.inference_mode():
                probs = torch.sigmoid(self.model(**enc).logits).numpy()
            out += [dict(zip(self.codes, map(float, row), strict=True)) for row in np.atleast_2d(probs)]
        return out
