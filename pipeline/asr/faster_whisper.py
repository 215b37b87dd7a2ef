"""The faster-whisper backend (CTranslate2): int8 on CPU by default, several times faster than
PyTorch Whisper on the same weights.  ``asr.batch_size`` > 1 decodes several windows at once:
side by side (``asr.batch_mode: parallel``: one CTranslate2 replica per window, sharing the
weights, each on its share of the cores; every window decoded exactly as on its own), or in one
batch with faster-whisper's ``BatchedInferencePipeline`` (``batched``).  ``asr.full_context:
false`` lets Whisper's encoder see only the window's audio (plus a second) instead of 30 s padded
with silence: several times less work for a short window (live utterances).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator

import numpy as np

from pipeline.asr.backend import RawSegment, WhisperBackend
from pipeline.asr.weights import WeightsError, offline, resolve_model
from pipeline.records import SAMPLE_RATE

log = logging.getLogger(__name__)

CONTEXT_MARGIN_FRAMES = 100  # asr.full_context false: frames (10 ms) of padding kept after the audio
_context = threading.local()  # set while this thread decodes with a trimmed encoder input


def _pad_or_trim(array, length: int = 3000, *, axis: int = -1):
    """faster-whisper's pad_or_trim, except that a trimming thread pads only to the audio's end
    plus a margin (rounded up to 100 frames): the encoder's cost grows with its input."""
    from faster_whisper.audio import pad_or_trim

    if getattr(_context, "trim", False):
        length = min(length, -(-(array.shape[axis] + CONTEXT_MARGIN_FRAMES) // 100) * 100)
    return pad_or_trim(array, length, axis=axis)


def _install_trim() -> None:
    import faster_whisper.transcribe

    faster_whisper.transcribe.pad_or_trim = _pad_or_trim  # no-op unless a thread asks to trim


def pick_device(device: str) -> str:
    """``auto`` → ``cuda`` when CTranslate2 sees a GPU, else ``cpu``."""
    if device != "auto":
        return device
    try:
        import ctranslate2

        return "cuda" if ctranslate2.get_cuda_device_count() > 0 else "cpu"
    except Exception:  # pragma: no cover - depends on the machine
        return "cpu"


def _tame_malloc() -> None:
    """Two decoding threads under glibc: cap malloc's arenas at 2 and hand buffers of 4 MB and
    more back to the system when freed.  Otherwise every thread's arena keeps the freed decoder
    buffers (the cross-attention cache of a 5-beam search is ~180 MB) and a worker's peak memory
    grows by ~130 MB with no gain in speed (measured in ``livemod bench asr``)."""
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt(-8, 2)  # M_ARENA_MAX
        libc.mallopt(-3, 4 << 20)  # M_MMAP_THRESHOLD
    except (OSError, AttributeError):  # not glibc: nothing to tune
        pass


def _raw(seg, offset: float = 0.0) -> RawSegment:
    return RawSegment(
        start=seg.start - offset,
        end=seg.end - offset,
        text=seg.text,
        words=[(w.start - offset, w.end - offset, w.word, w.probability) for w in seg.words or []],
        avg_logprob=seg.avg_logprob,
        no_speech_prob=seg.no_speech_prob,
    )


class FasterWhisperAsr(WhisperBackend):
    """Loads the model once (``setup``), then transcribes windows (``process``)."""

    backend = "faster-whisper"

    def __init__(self, config) -> None:
        super().__init__(config)
        self.batched = None

    def setup(self) -> None:
        from faster_whisper import WhisperModel

        c = self.config
        path, self.model_name = resolve_model(c.model)
        device = pick_device(c.device)
        compute = c.compute_type
        if device == "cpu" and compute == "float16":
            compute = "float32"
        side_by_side = c.side_by_side
        threads = c.cpu_threads
        if side_by_side > 1 and device == "cpu":  # the cores are split between the decoders
            threads = max(1, (c.cpu_threads or os.cpu_count() or 1) // side_by_side)
            _tame_malloc()
        try:
            self.model = WhisperModel(
                path,
                device=device,
                compute_type=compute,
                cpu_threads=threads,
                num_workers=side_by_side,  # replicas sharing the weights, one per decoding thread
                local_files_only=offline(),
            )
        except Exception as exc:
            if os.path.isdir(path):
                raise WeightsError(f"cannot load Whisper model from {path}: {exc}") from exc
            raise WeightsError(
                f"Whisper model {c.model!r} is neither a local folder nor reachable by name "
                f"(offline, or not in the cache): {str(exc).splitlines()[0][:200]}"
            ) from exc
        self.model_name = f"{self.model_name} {compute}"
        if side_by_side > 1:
            from concurrent.futures import ThreadPoolExecutor

            self.pool = ThreadPoolExecutor(side_by_side, thread_name_prefix="whisper")

    def _options(self) -> dict:
        c = self.config
        return dict(
            language=c.language,
            beam_size=c.beam_size,
            vad_filter=False,
            word_timestamps=True,
            initial_prompt=c.initial_prompt,
            # within a window: a second pass (after a pause Whisper took for the end) keeps the
            # initial prompt and the text before it; windows themselves stay independent
            condition_on_previous_text=c.condition_on_previous_text,
            temperature=list(c.temperatures),
            without_timestamps=True,  # utterance times come from VAD and word timestamps
        )

    def transcribe_window(self, audio: np.ndarray) -> Iterator[RawSegment]:
        segments, _info = self.model.transcribe(audio, **self._options())
        if self.config.full_context:
            for seg in segments:  # a lazy generator: stopping early skips the remaining decoding
                yield _raw(seg)
            return
        _install_trim()
        segments = iter(segments)
        while True:
            _context.trim = True  # only around faster-whisper's own steps, not the caller's
            try:
                seg = next(segments)
            except StopIteration:
                return
            finally:
                _context.trim = False
            yield _raw(seg)

    def transcribe_batch(self, audios: list[np.ndarray]) -> list[list[RawSegment]]:
        """One pass per window, the windows' encoder and decoder runs batched together.

        The windows are laid end to end and handed over as ``clip_timestamps``, one clip per
        window; each segment comes back with its clip's start (``seek``), which tells the
        window it belongs to.  No temperature fallback and no second pass over a tail the
        model skipped: that is what batching trades for speed.
        """
        from faster_whisper import BatchedInferencePipeline

        if self.batched is None:
            self.batched = BatchedInferencePipeline(self.model)
        starts = np.cumsum([0] + [len(a) for a in audios])
        clips = [
            {"start": starts[i] / SAMPLE_RATE, "end": starts[i + 1] / SAMPLE_RATE} for i in range(len(audios))
        ]
        options = self._options()
        options["temperature"] = options["temperature"][:1]
        del options["condition_on_previous_text"]
        segments, _info = self.batched.transcribe(
            np.concatenate(audios), clip_timestamps=clips, batch_size=len(audios), **options
        )
        fps = self.model.frames_per_second
        by_seek = {int(clip["start"] * fps): i for i, clip in enumerate(clips)}
        out: list[list[RawSegment]] = [[] for _ in audios]
        for seg in segments:
            i = by_seek.get(seg.seek)
            if i is None:  # rounding: the clip that starts nearest before
                i = max(0, int(np.searchsorted(starts[:-1] / SAMPLE_RATE * fps, seg.seek, side="right")) - 1)
            out[i].append(_raw(seg, clips[i]["start"]))
        return out
