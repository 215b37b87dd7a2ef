"""The openai-whisper backend (PyTorch), on the same weights as faster-whisper.

The bundled CTranslate2 model is converted once into an openai-whisper checkpoint in the
cache (:mod:`pipeline.asr.convert`).  Each window is decoded the way faster-whisper does it,
so the two backends can be compared line for line: text tokens only (``without_timestamps``),
beam search with the temperature fallback ladder, word timestamps from the alignment heads,
and a new pass from the last word's end only while more than ``TAIL_S`` of audio is left
(the caller stops the iterator).  ``whisper.transcribe`` cannot be stopped like that.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator

import numpy as np

from pipeline.asr.backend import RawSegment, WhisperBackend
from pipeline.asr.weights import WeightsError, offline, resolve_openai_model

log = logging.getLogger(__name__)

COMPRESSION_RATIO_THRESHOLD = 2.4  # the defaults of both whisper and faster-whisper
NO_SPEECH_THRESHOLD = 0.6
LOGPROB_THRESHOLD = -1.0


def pick_torch_device(device: str) -> str:
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def load_checkpoint(path: str, device: str):
    """An openai-whisper model from a ``.pt`` checkpoint; alignment heads applied when it has them."""
    import torch
    from whisper.model import ModelDimensions, Whisper

    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    model = Whisper(ModelDimensions(**checkpoint["dims"]))
    model.load_state_dict(checkpoint["model_state_dict"])
    heads = checkpoint.get("alignment_heads")
    if heads:
        mask = torch.zeros(model.dims.n_text_layer, model.dims.n_text_head, dtype=torch.bool)
        for layer, head in heads:
            mask[layer, head] = True
        model.register_buffer("alignment_heads", mask.to_sparse(), persistent=False)
    return model.to(device)


def _download_root() -> str:
    return os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "whisper")


def named_checkpoint(name: str) -> str:
    """The file of an official model (``base``, ``small``, ...): cached, or downloaded when online."""
    import whisper

    root = _download_root()
    path = os.path.join(root, os.path.basename(whisper._MODELS[name]))
    if os.path.isfile(path):
        return path
    if offline():
        raise WeightsError(f"Whisper model {name!r} is not in {root} and downloads are off (offline)")
    try:
        whisper._download(whisper._MODELS[name], root, False)
    except (OSError, RuntimeError) as exc:  # URLError is an OSError
        raise WeightsError(
            f"Whisper model {name!r} is neither in {root} nor reachable (offline?): "
            f"{str(exc).splitlines()[0][:200]}"
        ) from exc
    return path


def load_named(name: str, device: str):
    """An official model by name, with its alignment heads."""
    import whisper

    named_checkpoint(name)
    return whisper.load_model(name, device=device, download_root=_download_root())


class OpenAIWhisperAsr(WhisperBackend):
    """openai-whisper behind the same interface as :class:`FasterWhisperAsr`."""

    backend = "openai-whisper"

    def setup(self) -> None:
        import torch
        from whisper.tokenizer import get_tokenizer

        c = self.config
        target, name = resolve_openai_model(c.model)
        device = pick_torch_device(c.device)
        compute = "float32" if device == "cpu" or c.compute_type in ("float32", "int8_float32") else "float16"
        if compute != c.compute_type:
            log.info("openai-whisper runs %s on %s (asr.compute_type %s)", compute, device, c.compute_type)
        if device == "cpu" and c.cpu_threads:
            torch.set_num_threads(c.cpu_threads)
        if os.path.isfile(target):
            try:
                self.model = load_checkpoint(target, device)
            except Exception as exc:
                raise WeightsError(f"cannot load Whisper checkpoint {target}: {exc}") from exc
        else:
            self.model = load_named(target, device)
        self.model.eval()
        self.fp16 = compute == "float16"
        if self.fp16:
            self.model.half()
        self.tokenizer = get_tokenizer(
            self.model.is_multilingual,
            num_languages=self.model.num_languages,
            language=c.language,
            task="transcribe",
        )
        self.model_name = f"{name} {compute}"

    def _decode(self, mel):
        """One 30 s segment, with the temperature fallback of whisper / faster-whisper."""
        from whisper.decoding import DecodingOptions

        c = self.config
        result = None
        for t in c.temperatures:
            options = DecodingOptions(
                task="transcribe",
                language=c.language,
                temperature=t,
                beam_size=c.beam_size if t == 0 else None,
                best_of=5 if t > 0 else None,
                prompt=c.initial_prompt or None,
                without_timestamps=True,
                fp16=self.fp16,
            )
            result = self.model.decode(mel, options)
            if result.no_speech_prob > NO_SPEECH_THRESHOLD and result.avg_logprob < LOGPROB_THRESHOLD:
                break  # silence: no point in sampling
            if (
                result.compression_ratio <= COMPRESSION_RATIO_THRESHOLD
                and result.avg_logprob >= LOGPROB_THRESHOLD
            ):
                break
        return result

    def transcribe_window(self, audio: np.ndarray) -> Iterator[RawSegment]:
        import torch
        from whisper.audio import (
            HOP_LENGTH,
            N_FRAMES,
            N_SAMPLES,
            SAMPLE_RATE,
            log_mel_spectrogram,
            pad_or_trim,
        )
        from whisper.timing import add_word_timestamps

        model, tokenizer = self.model, self.tokenizer
        fps = SAMPLE_RATE / HOP_LENGTH
        with torch.inference_mode():
            mel = log_mel_spectrogram(
                torch.from_numpy(np.ascontiguousarray(audio, np.float32)),
                model.dims.n_mels,
                padding=N_SAMPLES,
            )
            content = mel.shape[-1] - N_FRAMES
            seek, last_speech = 0, 0.0
            while seek < content:
                size = min(N_FRAMES, content - seek)
                segment = pad_or_trim(mel[:, seek : seek + size], N_FRAMES).to(model.device)
                if self.fp16:
                    segment = segment.half()
                result = self._decode(segment)
                offset = seek / fps
                if result.no_speech_prob > NO_SPEECH_THRESHOLD and result.avg_logprob < LOGPROB_THRESHOLD:
                    seek += size
                    continue
                tokens = [t for t in result.tokens if t < tokenizer.eot]
                seg = {
                    "seek": seek,
                    "start": offset,
                    "end": offset + size / fps,
                    "text": tokenizer.decode(tokens),
                    "tokens": tokens,
                }
                add_word_timestamps(
                    segments=[seg],
                    model=model,
                    tokenizer=tokenizer,
                    mel=segment,
                    num_frames=size,
                    last_speech_timestamp=last_speech,
                )
                words = [(w["start"], w["end"], w["word"], w["probability"]) for w in seg.get("words", [])]
                yield RawSegment(
                    start=offset,
                    end=offset + size / fps,
                    text=seg["text"],
                    words=words,
                    avg_logprob=result.avg_logprob,
                    no_speech_prob=result.no_speech_prob,
                )
                if words and words[-1][1] > offset:
                    last_speech = words[-1][1]
                    seek = max(seek + 1, round(words[-1][1] * fps))
                else:
                    seek += size
