"""The trained text model: multi-label sequence classification over the subcategories.

A small BERT (transformers ``BertForSequenceClassification``) trained from scratch by
``scripts/train_classifier.py`` on the project's corpus, or a pretrained Chinese checkpoint
fine-tuned with ``--base-model``.

The from-scratch model reads one token per normalised character, and BERT's token-type
embedding carries the character's toneless pinyin syllable (``type_vocab_size`` = number of
syllables).  So the model hears each character as well as reading it: when ASR writes the
right sound with the wrong characters (包制摆病, 头包) the characters may be rare or unseen,
their syllables are not.  A fine-tuned checkpoint keeps its own tokenizer and reads characters.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from pipeline.classify.ngram import WEIGHTS as NGRAM_WEIGHTS
from pipeline.classify.ngram import NgramReader
from pipeline.classify.phonetic import sounds
from pipeline.classify.semantic import WEIGHTS, SemanticHead
from pipeline.classify.taxonomy import CODES

log = logging.getLogger(__name__)

MAX_LENGTH = 96
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]"]
ENCODING = "char+pinyin-type"  # marker in config.json for the from-scratch encoding


class CharPinyinEncoder:
    """Characters → token ids, their syllables → token-type ids."""

    def __init__(self, chars: list[str], syllables: list[str]) -> None:
        self.chars = SPECIALS + [c for c in chars if c not in SPECIALS]
        self.syllables = ["-"] + [s for s in syllables if s != "-"]
        self._char = {c: i for i, c in enumerate(self.chars)}
        self._syl = {s: i for i, s in enumerate(self.syllables)}

    @classmethod
    def load(cls, folder: Path) -> CharPinyinEncoder:
        def lines(name: str) -> list[str]:
            return [x for x in (folder / name).read_text(encoding="utf-8").split("\n") if x]

        enc = cls([], [])
        enc.chars, enc.syllables = lines("vocab.txt"), lines("syllables.txt")
        enc._char = {c: i for i, c in enumerate(enc.chars)}
        enc._syl = {s: i for i, s in enumerate(enc.syllables)}
        return enc

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "vocab.txt").write_text("\n".join(self.chars) + "\n", encoding="utf-8")
        (folder / "syllables.txt").write_text("\n".join(self.syllables) + "\n", encoding="utf-8")

    def ids(self, normalised: str) -> tuple[list[int], list[int]]:
        text = normalised[: MAX_LENGTH - 2]
        types = [0] * len(text)
        for syl, a, b in sounds(text):
            for i in range(a, b):
                types[i] = self._syl.get(syl, 0)
        unk = self._char["[UNK]"]
        chars = [self._char.get(c, unk) for c in text]
        return [self._char["[CLS]"], *chars, self._char["[SEP]"]], [0, *types, 0]

    def __call__(self, texts: list[str]):
        import torch

        rows = [self.ids(t) for t in texts]
        width = max(len(ids) for ids, _ in rows)
        input_ids = torch.zeros(len(rows), width, dtype=torch.long)
        types = torch.zeros(len(rows), width, dtype=torch.long)
        mask = torch.zeros(len(rows), width, dtype=torch.long)
        for i, (ids, tt) in enumerate(rows):
            input_ids[i, : len(ids)] = torch.tensor(ids)
            types[i, : len(tt)] = torch.tensor(tt)
            mask[i, : len(ids)] = 1
        return {"input_ids": input_ids, "token_type_ids": types, "attention_mask": mask}


class TokenizerEncoder:
    """A pretrained checkpoint's own tokenizer over the characters."""

    def __init__(self, tokenizer) -> None:
        self.tokenizer = tokenizer

    def __call__(self, texts: list[str]):
        return self.tokenizer(
            texts, truncation=True, max_length=MAX_LENGTH, padding=True, return_tensors="pt"
        )


def load_encoder(folder: Path, config) -> CharPinyinEncoder | TokenizerEncoder:
    if getattr(config, "livemod_encoding", None) == ENCODING:
        return CharPinyinEncoder.load(folder)
    from transformers import AutoTokenizer

    return TokenizerEncoder(AutoTokenizer.from_pretrained(str(folder)))


class TextModel:
    """Loads a saved model folder once; ``predict`` returns a probability per code."""

    def __init__(self, path: str | Path, threads: int | None = None) -> None:
        self.path = Path(path)
        self.threads = threads
        self.model = None
        self.encode = None
        self.codes: list[str] = []
        self.version = ""
        self.fusion: dict = {}

    def setup(self) -> None:
        import torch
        from transformers import AutoModelForSequenceClassification
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # no "Loading weights" bar in every worker's output
        if not (self.path / "config.json").is_file():
            raise FileNotFoundError(
                f"{self.path}: no trained classifier here (config.json missing); "
                "train one with scripts/train_classifier.py or set classifier.model_dir: null"
            )
        if self.threads:
            torch.set_num_threads(self.threads)
        self.model = AutoModelForSequenceClassification.from_pretrained(str(self.path), dtype=torch.float32)
        self.model.eval()
        self.encode = load_encoder(self.path, self.model.config)
        id2label = self.model.config.id2label
        self.codes = [id2label[i] for i in range(len(id2label))]
        unknown = set(self.codes) - set(CODES)
        if unknown:
            raise ValueError(f"{self.path}: model labels outside the taxonomy: {sorted(unknown)}")
        meta = self.path / "training.json"
        info = json.loads(meta.read_text(encoding="utf-8")) if meta.is_file() else {}
        self.version = info.get("version") or f"model-{self.path.name}"
        self.fusion = info.get("fusion", {})  # thresholds tuned on the dev split
        # the other readers, averaged with the character model by the weights in training.json
        self.readers: list[tuple[str, float, object]] = []
        semantic = info.get("semantic")
        if semantic and semantic.get("weight", 0) > 0 and (self.path / WEIGHTS).is_file():
            self.readers.append(("semantic", float(semantic["weight"]), SemanticHead(self.path, semantic)))
        ngram = info.get("ngram")
        if ngram and ngram.get("weight", 0) > 0 and (self.path / NGRAM_WEIGHTS).is_file():
            self.readers.append(("ngram", float(ngram["weight"]), NgramReader(self.path, ngram)))

    @property
    def shares(self) -> dict[str, float]:
        """Each reader's share of the average as trained (equal): the character model's is what
        the others leave.  The fusion tuning may pick others (``training.json``'s fusion)."""
        return {"char": 1.0 - sum(w for _, w, _ in self.readers), **{n: w for n, w, _ in self.readers}}

    def read(self, normalised: list[str], batch_size: int = 64) -> np.ndarray:
        """Every reader's probabilities: readers × texts × codes, in ``shares``' order."""
        import torch

        if self.model is None:
            self.setup()
        parts = []
        for i in range(0, len(normalised), batch_size):
            texts = normalised[i : i + batch_size]
            with torch.inference_mode():
                char = torch.sigmoid(self.model(**self.encode(texts)).logits).numpy()
            parts.append(np.stack([char, *(reader.predict(texts) for _, _, reader in self.readers)]))
        if not parts:
            return np.zeros((1 + len(self.readers), 0, len(self.codes)), dtype=np.float32)
        return np.concatenate(parts, axis=1)

    def mix(
        self, each: np.ndarray, shares: dict[str, float] | None = None
    ) -> list[tuple[dict[str, float], dict[str, float]]]:
        """Per text of ``read``'s output: (the readers' probabilities averaged by ``shares``, what the
        least convinced reader with a share gives), each per code.  With the character model
        alone both numbers are the same."""
        shares = shares or self.shares
        weights = [float(shares.get(name, 0.0)) for name in self.shares]
        probs = sum(w * p for w, p in zip(weights, each, strict=True))
        agree = np.min(each[[i for i, w in enumerate(weights) if w > 0]], axis=0)
        return [
            (dict(zip(self.codes, p.tolist(), strict=True)), dict(zip(self.codes, a.tolist(), strict=True)))
            for p, a in zip(probs, agree, strict=True)
        ]

    def predict(self, normalised: list[str], batch_size: int = 64) -> list[dict[str, float]]:
        """Probabilities per code for each (already normalised) text, the readers in their trained shares."""
        return [probs for probs, _ in self.predict_with_agreement(normalised, batch_size)]

    def predict_with_agreement(
        self, normalised: list[str], batch_size: int = 64
    ) -> list[tuple[dict[str, float], dict[str, float]]]:
        """Per text: (probability per code, what the least convinced reader gives per code).
        The readers are the character model and, when trained, the Whisper-embedding head and the
        n-gram reader; a model-only flag needs none of them to be sure the text is harmless."""
        return self.mix(self.read(normalised, batch_size))
