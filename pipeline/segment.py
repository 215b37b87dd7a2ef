"""Voice activity detection and windowing.

Audio arrives in blocks; :class:`Segmenter` turns it into utterances (speech between pauses,
cut at ``max_utterance_s``) that know their stream time, without ever holding more than the
current utterance in memory.  :func:`pack_windows` then packs consecutive utterances into
windows of up to 30 s, because Whisper always encodes 30 s of audio: one window per 30 s
instead of one per utterance is several times less encoder work.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pipeline.config import VadConfig
from pipeline.records import SAMPLE_RATE, Utterance

FRAME = 512  # silero-vad's frame at 16 kHz (32 ms)


CONTEXT = 64  # samples of the previous frame silero-vad sees before each frame at 16 kHz
SEQUENCE_MODEL = "silero_vad_16k_sequence.onnx"  # many frames per call (silero-vad ≥ 6)
STREAMING_MODEL = "silero_vad.onnx"  # one frame per call (every silero-vad ≥ 5)


def silero_model_dir() -> Path:
    """The ``data`` folder of the silero-vad wheel, found without importing the package
    (its ``__init__`` imports torch, which the VAD does not need)."""
    spec = importlib.util.find_spec("silero_vad")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("silero-vad is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "data"


class SileroVad:
    """Streaming speech probabilities from the silero-vad model bundled in its wheel (ONNX),
    run with onnxruntime directly: no torch, so a worker that decodes, finds utterances and
    transcribes needs neither torch's start-up (~1 s) nor its memory (~150 MB).

    :meth:`probs` scores any number of consecutive 512-sample frames, carrying the model's
    state and the 64-sample context from one call to the next exactly as silero-vad's own
    streaming wrapper does.  With silero-vad ≥ 6 the frames go through its "sequence" export
    in one call per :data:`MAX_FRAMES` (the same weights, bit-identical probabilities, ~3×
    less time than one call per frame); older wheels run the streaming model frame by frame.
    """

    MAX_FRAMES = 512  # frames per call of the sequence model (16 s of audio)

    def __init__(self, sequence: bool | None = None) -> None:
        import onnxruntime

        data = silero_model_dir()
        if sequence is None:
            sequence = (data / SEQUENCE_MODEL).is_file()
        opts = onnxruntime.SessionOptions()
        opts.inter_op_num_threads = 1
        opts.intra_op_num_threads = 1
        self.sequence = sequence
        self.session = onnxruntime.InferenceSession(
            str(data / (SEQUENCE_MODEL if sequence else STREAMING_MODEL)),
            sess_options=opts,
            providers=["CPUExecutionProvider"],
        )
        self._sr = np.array(SAMPLE_RATE, dtype=np.int64)
        self.reset()

    def reset(self) -> None:
        self._state = np.zeros((2, 1, 128), np.float32)  # the LSTM's h and c
        self._context = np.zeros(CONTEXT, np.float32)

    def probs(self, frames: np.ndarray) -> np.ndarray:
        """Speech probability of each row of ``frames`` (k × 512, consecutive audio)."""
        frames = np.ascontiguousarray(frames, dtype=np.float32).reshape(-1, FRAME)
        out = np.empty(len(frames), np.float32)
        for lo in range(0, len(frames), self.MAX_FRAMES):
            block = frames[lo : lo + self.MAX_FRAMES]
            x = np.empty((len(block), CONTEXT + FRAME), np.float32)  # each frame after its context
            x[:, CONTEXT:] = block
            x[0, :CONTEXT] = self._context
            x[1:, :CONTEXT] = block[:-1, -CONTEXT:]
            self._context = block[-1, -CONTEXT:].copy()
            if self.sequence:
                p, h, c = self.session.run(
                    ["speech_probs", "hn", "cn"], {"input": x, "h": self._state[:1], "c": self._state[1:]}
                )
                out[lo : lo + len(block)] = p.reshape(-1)
                self._state = np.concatenate([h, c])
            else:
                for i in range(len(block)):
                    p, self._state = self.session.run(
                        None, {"input": x[i : i + 1], "state": self._state, "sr": self._sr}
                    )
                    out[lo + i] = p.reshape(-1)[0]
        return out

    def __call__(self, frame: np.ndarray) -> float:
        return float(self.probs(frame)[0])


@dataclass
class Segmenter:
    """Cut a stream into utterances as its audio arrives (batch and live use the same code)."""

    stream_id: str
    config: VadConfig
    vad: SileroVad
    time_offset: float = 0.0  # stream time of the first sample fed (live: after a reconnect)
    first_index: int = 0  # index of the first utterance (live: continues across reconnects)
    _buf: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    _buf_start: int = 0  # stream sample index of _buf[0]
    _pending: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    _pos: int = 0  # stream sample index of the next frame
    _speech_start: int | None = None
    _silence_start: int | None = None
    _probs: list[float] = field(default_factory=list)  # of the current utterance
    _last_end: int = 0
    _index: int = 0

    def __post_init__(self) -> None:
        self.vad.reset()
        c = self.config
        self._pad = int(c.speech_pad_ms * SAMPLE_RATE / 1000)
        self._min_silence = int(c.min_silence_ms * SAMPLE_RATE / 1000)
        self._min_speech = int(c.min_speech_ms * SAMPLE_RATE / 1000)
        self._max_len = int(c.max_utterance_s * SAMPLE_RATE) - 2 * self._pad
        self._off = max(0.0, c.threshold - 0.15)
        self._index = self.first_index

    @property
    def position(self) -> float:
        """Stream time up to which audio has been examined."""
        return self.time_offset + self._pos / SAMPLE_RATE

    @property
    def next_index(self) -> int:
        return self._index

    def feed(self, audio: np.ndarray) -> Iterator[tuple[Utterance, np.ndarray]]:
        """Add audio; yield every utterance that ended inside it."""
        self._buf = np.concatenate([self._buf, audio])
        data = np.concatenate([self._pending, audio]) if len(self._pending) else audio
        n = len(data) // FRAME * FRAME
        self._pending = data[n:].copy()
        probs = self.vad.probs(data[:n]) if n else ()  # every whole frame in one go
        for p in probs:
            yield from self._step(float(p))
        self._trim()

    def flush(self) -> Iterator[tuple[Utterance, np.ndarray]]:
        """End of stream: emit the utterance still open, if any."""
        end = self._pos + len(self._pending)
        if self._speech_start is not None:
            stop = self._silence_start if self._silence_start is not None else end
            yield from self._emit(self._speech_start, stop)
        self._speech_start = None

    def _step(self, p: float) -> Iterator[tuple[Utterance, np.ndarray]]:
        """One frame of speech probability ``p``."""
        here = self._pos
        self._pos += FRAME
        if self._speech_start is None:
            if p >= self.config.threshold:
                self._speech_start, self._silence_start, self._probs = here, None, [p]
            return
        self._probs.append(p)
        if p >= self.config.threshold:
            self._silence_start = None
        elif p < self._off and self._silence_start is None:
            self._silence_start = here
        if self._silence_start is not None and self._pos - self._silence_start >= self._min_silence:
            yield from self._emit(self._speech_start, self._silence_start)
            self._speech_start = None
        elif self._pos - self._speech_start >= self._max_len:
            cut = self._best_cut()
            yield from self._emit(self._speech_start, cut)
            self._probs = self._probs[(cut - self._speech_start) // FRAME :]
            self._speech_start, self._silence_start = cut, None

    def _best_cut(self) -> int:
        """Where to force a cut in over-long speech: the least speech-like frame in its last third."""
        probs = np.asarray(self._probs)
        lo = len(probs) * 2 // 3
        k = lo + int(np.argmin(probs[lo:]))
        return self._speech_start + k * FRAME

    def _emit(self, start: int, end: int) -> Iterator[tuple[Utterance, np.ndarray]]:
        if end - start < self._min_speech:
            return
        a = max(self._last_end, start - self._pad, self._buf_start)
        b = min(end + self._pad, self._buf_start + len(self._buf))
        audio = self._buf[a - self._buf_start : b - self._buf_start].copy()
        self._last_end = b
        t0 = self.time_offset
        utt = Utterance(self.stream_id, self._index, t0 + a / SAMPLE_RATE, t0 + b / SAMPLE_RATE)
        self._index += 1
        yield utt, audio

    def _trim(self) -> None:
        """Drop audio no future utterance can need."""
        keep_from = self._pos - self._pad - FRAME
        if self._speech_start is not None:
            keep_from = min(keep_from, self._speech_start - self._pad)
        keep_from = max(keep_from, self._buf_start)
        drop = keep_from - self._buf_start
        if drop > 0:
            self._buf = self._buf[drop:]
            self._buf_start = keep_from


def segment_blocks(
    stream_id: str, blocks: Iterable[np.ndarray], config: VadConfig, vad: SileroVad
) -> Iterator[tuple[Utterance, np.ndarray]]:
    """Utterances of a whole stream given as audio blocks."""
    seg = Segmenter(stream_id, config, vad)
    for block in blocks:
        yield from seg.feed(block)
    yield from seg.flush()


@dataclass
class Window:
    """Consecutive utterances of one stream packed into one Whisper input, with silence between."""

    stream_id: str
    utterances: list[Utterance]
    offsets: list[float]  # where each utterance starts in ``audio`` (seconds)
    audio: np.ndarray

    @property
    def duration(self) -> float:
        return len(self.audio) / SAMPLE_RATE

    def items(self) -> list[tuple[Utterance, np.ndarray]]:
        """The (utterance, audio) pairs packed in this window (to repack them with others)."""
        out = []
        for i, u in enumerate(self.utterances):
            a = int(round(self.offsets[i] * SAMPLE_RATE))
            out.append((u, self.audio[a : a + int(round(u.duration * SAMPLE_RATE))]))
        return out

    def locate(self, t: float) -> int:
        """Which utterance a time in the packed audio belongs to (a gap goes to the one before)."""
        return max(0, int(np.searchsorted(self.offsets, t, side="right")) - 1)

    def to_stream(self, i: int, t: float) -> float:
        """Stream time of packed-audio time ``t`` inside utterance ``i`` (clamped to it)."""
        u = self.utterances[i]
        return min(u.end, max(u.start, u.start + t - self.offsets[i]))


def pack_windows(
    utterances: Iterable[tuple[Utterance, np.ndarray]], window_s: float, gap_s: float
) -> Iterator[Window]:
    """Pack utterances, in order, into windows no longer than ``window_s`` seconds."""
    limit = int(window_s * SAMPLE_RATE)
    gap = np.zeros(int(gap_s * SAMPLE_RATE), np.float32)
    utts: list[Utterance] = []
    parts: list[np.ndarray] = []
    size = 0

    def build() -> Window:
        offsets, pos, pieces = [], 0, []
        for a in parts:
            offsets.append(pos / SAMPLE_RATE)
            pieces += [a, gap]
            pos += len(a) + len(gap)
        return Window(utts[0].stream_id, list(utts), offsets, np.concatenate(pieces[:-1]))

    for utt, audio in utterances:
        extra = len(audio) + (len(gap) if parts else 0)
        if parts and size + extra > limit:
            yield build()
            utts, parts, size = [], [], 0
            extra = len(audio)
        utts.append(utt)
        parts.append(audio[:limit])
        size += extra
    if parts:
        yield build()
