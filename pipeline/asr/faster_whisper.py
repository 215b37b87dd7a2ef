"""ASR with faster-whisper (CTranslate2): a packed window of utterances → one transcript each.

Whisper's segment and word timestamps are relative to the packed window; they are mapped back
to stream time through :meth:`Window.locate`, and each word goes to the utterance it falls in.
"""

from __future__ import annotations

import logging
import os
from collections import defaultdict

from pipeline.asr.filters import hallucination_reason, to_simplified
from pipeline.asr.weights import WeightsError, resolve_model
from pipeline.config import AsrConfig
from pipeline.records import Transcript, Word
from pipeline.segment import Window

log = logging.getLogger(__name__)

TAIL_S = 1.0  # audio left after the last word that is not worth another decoding pass


def pick_device(device: str) -> str:
    if device != "auto":
        return device
    try:
        import ctranslate2

        return "cuda" if ctranslate2.get_cuda_device_count() > 0 else "cpu"
    except Exception:  # pragma: no cover - depends on the machine
        return "cpu"


class FasterWhisperAsr:
    """Loads the model once (``setup``), then transcribes windows (``process``)."""

    def __init__(self, config: AsrConfig) -> None:
        self.config = config
        self.model = None
        self.model_name = ""

    def setup(self) -> None:
        from faster_whisper import WhisperModel

        c = self.config
        path, self.model_name = resolve_model(c.model)
        device = pick_device(c.device)
        compute = c.compute_type
        if device == "cpu" and compute == "float16":
            compute = "float32"
        offline = bool(os.environ.get("HF_HUB_OFFLINE"))
        try:
            self.model = WhisperModel(
                path, device=device, compute_type=compute, cpu_threads=c.cpu_threads, local_files_only=offline
            )
        except Exception as exc:
            if os.path.isdir(path):
                raise WeightsError(f"cannot load Whisper model from {path}: {exc}") from exc
            raise WeightsError(
                f"Whisper model {c.model!r} is neither a local folder nor reachable by name "
                f"(offline, or not in the cache): {str(exc).splitlines()[0][:200]}"
            ) from exc
        self.model_name = f"{self.model_name} {compute}"

    def process(self, window: Window) -> list[Transcript]:
        """Transcribe one window; returns a transcript for every utterance in it, in order."""
        if self.model is None:
            self.setup()
        c = self.config
        segments, _info = self.model.transcribe(
            window.audio,
            language=c.language,
            beam_size=c.beam_size,
            vad_filter=False,
            word_timestamps=True,
            initial_prompt=c.initial_prompt,
            condition_on_previous_text=False,
            temperature=list(c.temperatures),
            without_timestamps=True,  # utterance times come from VAD and word timestamps
        )
        words: dict[int, list[Word]] = defaultdict(list)
        stats: dict[int, list[tuple[float, float, int]]] = defaultdict(list)
        for seg in segments:  # a lazy generator: stopping early skips the remaining decoding
            pieces = [(w.start, w.end, w.word, w.probability) for w in seg.words or []]
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
