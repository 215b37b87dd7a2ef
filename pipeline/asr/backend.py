"""One interface for the Whisper backends: a packed window of utterances → one transcript each.

A backend (``faster-whisper`` on CTranslate2, ``openai-whisper`` on PyTorch) only turns audio
into :class:`RawSegment` s with word timings relative to that audio (:meth:`transcribe_window`,
a lazy iterator); everything else is shared here, so ``stages.py``, the local runner and the
Ray actors never see which backend runs:

* word times are mapped back to stream time through :meth:`Window.locate` /
  :meth:`Window.to_stream`, and each word goes to the utterance it falls in;
* decoding stops when less than :data:`TAIL_S` of audio is left after the last word (the
  backends would decode that padding as a fresh 30 s window: slow, and it hallucinates);
* OpenCC t2s and the hallucination filters are applied the same way.

:meth:`process_many` transcribes several windows in one call; a backend that can batch them
(``asr.batch_size`` > 1) overrides :meth:`transcribe_batch`.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from pipeline.asr.filters import hallucination_reason, to_simplified
from pipeline.config import AsrConfig
from pipeline.records import Transcript, Word
from pipeline.segment import Window

log = logging.getLogger(__name__)

TAIL_S = 1.0  # audio left after the last word that is not worth another decoding pass
BACKENDS = ("faster-whisper", "openai-whisper")


@dataclass
class RawSegment:
    """What a backend returns for a stretch of its input audio (times in seconds of that audio)."""

    start: float
    end: float
    text: str
    words: list[tuple[float, float, str, float]] = field(default_factory=list)  # start, end, text, prob
    avg_logprob: float = 0.0
    no_speech_prob: float = 0.0


class AsrBackend(Protocol):
    """What the stages and runners use."""

    model_name: str

    def setup(self) -> None: ...

    def process(self, window: Window) -> list[Transcript]: ...

    def process_many(self, windows: list[Window]) -> list[list[Transcript]]: ...


class WhisperBackend:
    """Shared part of the backends: ``setup`` loads the model once, ``process`` transcribes."""

    backend = ""

    def __init__(self, config: AsrConfig) -> None:
        self.config = config
        self.model = None
        self.model_name = ""
        self.pool = None  # config.side_by_side threads that decode windows side by side

    # -- what a backend implements -------------------------------------------------------
    def setup(self) -> None:
        raise NotImplementedError

    def transcribe_window(self, audio: np.ndarray) -> Iterator[RawSegment]:
        """Segments of ``audio`` (≤ 30 s), lazily: the caller stops early near the end."""
        raise NotImplementedError

    def transcribe_batch(self, audios: list[np.ndarray]) -> list[list[RawSegment]]:
        """Several windows at once; by default one after the other."""
        return [list(self.transcribe_window(a)) for a in audios]

    # -- shared ---------------------------------------------------------------------------
    def process(self, window: Window) -> list[Transcript]:
        """Transcribe one window; returns a transcript for every utterance in it, in order."""
        if self.model is None:
            self.setup()
        return self.to_transcripts(window, self.transcribe_window(window.audio))

    def process_many(self, windows: list[Window]) -> list[list[Transcript]]:
        """Transcribe windows together (``asr.batch_size`` > 1): side by side
        (``asr.batch_mode: parallel``, where the backend has a :attr:`pool`) or batched."""
        if self.model is None:
            self.setup()
        if self.config.batch_size <= 1 or len(windows) <= 1:
            return [self.process(w) for w in windows]
        if self.pool is not None:
            return list(self.pool.map(self.process, windows))
        out = []
        for i in range(0, len(windows), self.config.batch_size):
            chunk = windows[i : i + self.config.batch_size]
            segments = self.transcribe_batch([w.audio for w in chunk])
            out += [self.to_transcripts(w, s) for w, s in zip(chunk, segments)]
        return out

    def to_transcripts(self, window: Window, segments: Iterable[RawSegment]) -> list[Transcript]:
        words: dict[int, list[Word]] = defaultdict(list)
        stats: dict[int, list[tuple[float, float, int]]] = defaultdict(list)
        for seg in segments:
            pieces = list(seg.words)
            if not pieces and seg.text.strip():
                pieces = [(seg.start, seg.end, seg.text.strip(), 0.0)]  # no word timing
            touched: dict[int, int] = defaultdict(int)
            for start, end, text, prob in pieces:
                i = window.locate((start + end) / 2)
                if not words[i] and not text.strip():
                    continue
                t0, t1 = window.to_stream(i, start), window.to_stream(i, end)
                words[i].append(Word(t0, max(t0, t1), to_simplified(text), prob))
                touched[i] += 1
            for i, n in touched.items():
                stats[i].append((seg.avg_logprob, seg.no_speech_prob, n))
            heard_until = pieces[-1][1] if pieces else seg.end
            if window.duration - heard_until < TAIL_S:
                # With word timestamps Whisper seeks to the last word's end and would decode
                # the remaining padding as a fresh 30 s window: slow, and it hallucinates there.
                break
        return [
            self._transcript(window, i, words.get(i, []), stats.get(i, []))
            for i in range(len(window.utterances))
        ]

    def _transcript(self, window: Window, i: int, words: list[Word], stats) -> Transcript:
        if words and words[0].text != words[0].text.lstrip():
            first = words[0]
            words[0] = Word(first.start, first.end, first.text.lstrip(), first.probability)
        text = "".join(w.text for w in words).strip()
        n = sum(k for _, _, k in stats) or 1
        logprob = sum(lp * k for lp, _, k in stats) / n if stats else 0.0
        no_speech = max((ns for _, ns, _ in stats), default=1.0)
        reason = hallucination_reason(text, logprob, no_speech, self.config.hallucination)
        return Transcript(
            utterance=window.utterances[i],
            text=text,
            words=tuple(words),
            avg_logprob=logprob,
            no_speech_prob=no_speech,
            filtered=reason,
            asr_model=self.model_name,
        )


def make_backend(config: AsrConfig) -> WhisperBackend:
    """The backend named in ``asr.backend``."""
    if config.backend == "openai-whisper":
        from pipeline.asr.openai_whisper import OpenAIWhisperAsr

        return OpenAIWhisperAsr(config)
    if config.backend == "faster-whisper":
        from pipeline.asr.faster_whisper import FasterWhisperAsr

        return FasterWhisperAsr(config)
    raise ValueError(f"unknown ASR backend {config.backend!r}; choose one of {', '.join(BACKENDS)}")


def ensure_model(config: AsrConfig) -> str:
    """Find (assemble, convert, download when online) the model before any worker starts.

    Run once by the driver, so that a missing model is one clear error instead of a crash in
    every ASR worker, and N workers do not convert or download the same model at once.
    Returns what the backend will load.  Raises :class:`WeightsError`.
    """
    import os

    from pipeline.asr.weights import WeightsError, offline, resolve_model, resolve_openai_model

    if config.backend == "openai-whisper":
        from pipeline.asr.openai_whisper import named_checkpoint

        target, _ = resolve_openai_model(config.model)
        return target if os.path.isfile(target) else named_checkpoint(target)
    target, _ = resolve_model(config.model)
    if not os.path.isdir(target):
        from faster_whisper.utils import download_model

        try:
            return download_model(target, local_files_only=offline())
        except Exception as exc:
            raise WeightsError(
                f"Whisper model {config.model!r} is neither a local folder nor reachable by name "
                f"(offline, or not in the cache): {str(exc).splitlines()[0][:200]}"
            ) from exc
    return target
