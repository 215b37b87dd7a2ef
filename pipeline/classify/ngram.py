"""A third reader: bags of character and pinyin n-grams (fastText-style).

The character BERT reads order and context; the Whisper-embedding head reads what words mean.
This reader only counts pieces: character 1–4-grams, toneless-pinyin 1–3-grams and the same
over fuzzy pinyin (z/zh, n/l, f/h, -n/-ng merged), each hashed into a fixed table of
``BUCKETS`` vectors, averaged and read by one linear layer.  It learns in seconds, makes
different mistakes from the other two, and a misheard word (步走平台, 加为心) still shares most of
its pinyin pieces with the word that was said.

The table is stored in ``ngram.safetensors`` beside the character model (fp16).
"""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np

from pipeline.classify.phonetic import fuzzy, sounds

FEATURES = "hashed char 1-4 + pinyin 1-3 + fuzzy pinyin 1-3 grams"
WEIGHTS = "ngram.safetensors"
BUCKETS = 1 << 16
CHAR_N, SOUND_N = 4, 3


def pieces(normalised: str) -> list[str]:
    """The n-grams of one normalised text, each tagged with what it is made of."""
    out = ["^" + normalised[:1]]
    for n in range(1, CHAR_N + 1):
        out += ["c" + normalised[i : i + n] for i in range(len(normalised) - n + 1)]
    syl = [s for s, _, _ in sounds(normalised)]
    fz = [fuzzy(s) for s in syl]
    for n in range(1, SOUND_N + 1):
        for i in range(len(syl) - n + 1):
            out.append("p" + "|".join(syl[i : i + n]))
            out.append("f" + "|".join(fz[i : i + n]))
    return out


def hashed(normalised: str, buckets: int = BUCKETS) -> list[int]:
    return [zlib.crc32(p.encode("utf-8")) % buckets for p in pieces(normalised)]


def bags(rows: list[list[int]]):
    """Rows of bucket ids → (flat ids, offsets) as ``EmbeddingBag`` wants them."""
    import torch

    flat = [i for r in rows for i in r] or [0]
    offsets = np.cumsum([0] + [len(r) for r in rows[:-1]]) if rows else np.zeros(0, dtype=np.int64)
    return torch.tensor(flat, dtype=torch.long), torch.from_numpy(np.asarray(offsets, dtype=np.int64))


def make_net(buckets: int, dim: int, outputs: int, dropout: float = 0.2, sparse: bool = False):
    import torch

    class NgramNet(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.table = torch.nn.EmbeddingBag(buckets, dim, mode="mean", sparse=sparse)
            self.drop = torch.nn.Dropout(dropout)
            self.out = torch.nn.Linear(dim, outputs)
            torch.nn.init.uniform_(self.table.weight, -0.05, 0.05)

        def forward(self, ids, offsets):
            return self.out(self.drop(self.table(ids, offsets)))

    return NgramNet()


class NgramReader:
    """The trained n-gram reader; ``predict`` gives probabilities per code."""

    def __init__(self, folder: Path, meta: dict) -> None:
        import torch
        from safetensors.torch import load_file

        state = {k: v.float() for k, v in load_file(str(folder / WEIGHTS)).items()}
        self.buckets, dim = state["table.weight"].shape
        self.net = make_net(self.buckets, dim, meta["outputs"])
        self.net.load_state_dict(state)
        self.net.eval()
        self._torch = torch

    def predict(self, normalised: list[str]) -> np.ndarray:
        with self._torch.inference_mode():
            logits = self.net(*bags([hashed(t, self.buckets) for t in normalised]))
            return self._torch.sigmoid(logits).numpy()


def save_net(folder: Path, net) -> None:
    from safetensors.torch import save_file

    state = {k: v.detach().half().contiguous() for k, v in net.state_dict().items()}
    save_file(state, str(folder / WEIGHTS))
