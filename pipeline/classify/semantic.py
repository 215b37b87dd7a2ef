"""What a text is about, from Whisper's pretrained token embeddings.

The from-scratch character model only knows the words of its corpus; a phrasing it never saw
(蓝色的小药丸, 绿色软件) is a string of unknown neighbours to it.  Whisper's decoder was trained on
a great deal of Chinese speech transcripts, and its token embeddings (51,865 × 512, shipped with
the bundled weights) place related words near each other.  This head pools them (mean and max
over the utterance's tokens) and reads the pooled vector with a small MLP trained on the corpus.

Only the MLP (about 0.3 M parameters) is stored in the classifier folder (``semantic.safetensors``);
the embedding table and tokenizer are read from the bundled Whisper model on first use, so the
head costs no extra download and no extra committed weights.
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

FEATURES = "whisper-base-token-embeddings-mean-max"
WEIGHTS = "semantic.safetensors"
MAX_TOKENS = 128


@functools.cache
def _whisper_vocabulary(model_dir: str):
    from tokenizers import Tokenizer

    from pipeline.asr.convert import read_ct2_model

    folder = Path(model_dir)
    _, variables = read_ct2_model(folder / "model.bin")
    table = np.asarray(variables["decoder/embeddings/weight"], dtype=np.float32)
    return Tokenizer.from_file(str(folder / "tokenizer.json")), table


class WhisperEmbeddings:
    """Text → pooled Whisper token embeddings (mean ‖ max), 1,024 numbers per text."""

    def __init__(self, model_dir: str | Path | None = None) -> None:
        if model_dir is None:
            from pipeline.asr.weights import bundled_model_dir

            model_dir = bundled_model_dir()
        self.tokenizer, self.table = _whisper_vocabulary(str(model_dir))

    @property
    def size(self) -> int:
        return 2 * self.table.shape[1]

    def __call__(self, texts: list[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.size), dtype=np.float32)
        for i, enc in enumerate(self.tokenizer.encode_batch(list(texts), add_special_tokens=False)):
            ids = enc.ids[:MAX_TOKENS]
            if ids:
                vectors = self.table[ids]
                out[i, : self.table.shape[1]] = vectors.mean(0)
                out[i, self.table.shape[1] :] = vectors.max(0)
        return out


def make_head(inputs: int, hidden: int, outputs: int, dropout: float = 0.2):
    import torch

    return torch.nn.Sequential(
        torch.nn.Dropout(dropout),
        torch.nn.Linear(inputs, hidden),
        torch.nn.GELU(),
        torch.nn.Dropout(dropout),
        torch.nn.Linear(hidden, outputs),
    )


class SemanticHead:
    """The trained MLP over :class:`WhisperEmbeddings`; ``predict`` gives probabilities."""

    def __init__(self, folder: Path, meta: dict) -> None:
        import torch
        from safetensors.torch import load_file

        state = load_file(str(folder / WEIGHTS))
        self.mean = state.pop("feature_mean").float()
        self.std = state.pop("feature_std").float()
        self.net = make_head(self.mean.numel(), meta["hidden"], meta["outputs"])
        self.net.load_state_dict({k: v.float() for k, v in state.items()})
        self.net.eval()
        self.features = WhisperEmbeddings()
        self._torch = torch

    def predict(self, normalised: list[str]) -> np.ndarray:
        torch = self._torch
        x = (torch.from_numpy(self.features(normalised)) - self.mean) / self.std
        with torch.inference_mode():
            return torch.sigmoid(self.net(x)).numpy()


def save_head(folder: Path, net, mean, std) -> None:
    from safetensors.torch import save_file

    state = {k: v.detach().half().contiguous() for k, v in net.state_dict().items()}
    state["feature_mean"] = mean.float().contiguous()
    state["feature_std"] = std.float().contiguous()
    save_file(state, str(folder / WEIGHTS))
