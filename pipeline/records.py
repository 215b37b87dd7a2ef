"""Typed records that flow through the pipeline: media → utterances → transcripts → violations.

Times are floats in seconds from the start of the stream.  Every record can be turned into
a plain dict (``to_dict``) for JSONL, the database and Ray's object store.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

SAMPLE_RATE = 16000


def stable_id(*parts: object, length: int = 16) -> str:
    """A short deterministic id from its parts, so re-runs produce the same keys."""
    raw = "\x1f".join(str(p) for p in parts).encode("utf-8")
    return hashlib.sha1(raw).hexdigest()[:length]


@dataclass(frozen=True)
class MediaInfo:
    """What ffmpeg says about an input."""

    path: str
    duration: float  # seconds, 0.0 when unknown
    has_audio: bool
    has_video: bool
    format_name: str = ""
    audio_codec: str = ""
    video_codec: str = ""


@dataclass(frozen=True)
class Stream:
    """One input (a file or a live source) and its identity."""

    stream_id: str
    source: str  # path or URL as given by the user
    media: MediaInfo

    def to_dict(self) -> dict:
        return {
            "stream_id": self.stream_id,
            "source": self.source,
            "duration": round(self.media.duration, 3),
            "has_video": self.media.has_video,
            "format": self.media.format_name,
        }


@dataclass(frozen=True)
class Utterance:
    """A stretch of speech found by VAD, with its place in the stream."""

    stream_id: str
    index: int  # 0-based order within the stream
    start: float
    end: float

    @property
    def utterance_id(self) -> str:
        return f"{self.stream_id}:{self.index:05d}"

    @property
    def duration(self) -> float:
        return self.end - self.start


@dataclass(frozen=True)
class Word:
    start: float  # stream time
    end: float
    text: str
    probability: float


@dataclass(frozen=True)
class Transcript:
    """What ASR heard in one utterance.

    ``filtered`` is empty for kept text; otherwise it names why the text is believed to be a
    Whisper hallucination (flag, don't drop: the text stays for inspection).
    """

    utterance: Utterance
    text: str
    words: tuple[Word, ...] = ()
    avg_logprob: float = 0.0
    no_speech_prob: float = 0.0
    filtered: str = ""
    asr_model: str = ""

    @property
    def kept(self) -> bool:
        return not self.filtered and bool(self.text.strip())

    def to_dict(self) -> dict:
        u = self.utterance
        return {
            "id": u.utterance_id,
            "stream_id": u.stream_id,
            "index": u.index,
            "start": round(u.start, 3),
            "end": round(u.end, 3),
            "text": self.text,
            "words": [
                {
                    "start": round(w.start, 3),
                    "end": round(w.end, 3),
                    "text": w.text,
                    "probability": round(w.probability, 3),
                }
                for w in self.words
            ],
            "avg_logprob": round(self.avg_logprob, 4),
            "no_speech_prob": round(self.no_speech_prob, 4),
            "filtered": self.filtered,
            "asr_model": self.asr_model,
        }

    def span_time(self, span: tuple[int, int]) -> tuple[float, float] | None:
        """Stream time of a character span of ``text``, from word timestamps."""
        pos, first, last = 0, None, None
        for w in self.words:
            w_start, w_end = pos, pos + len(w.text)
            pos = w_end
            if w_end <= span[0] or w_start >= span[1]:
                continue
            first = first or w
            last = w
        if first is None or last is None:
            return None
        return (first.start, last.end)


@dataclass(frozen=True)
class Evidence:
    """Why a label was raised: the words said, where, and which rule matched them."""

    match: str  # text as it appears in the utterance
    span: tuple[int, int]  # character offsets into the utterance text
    rule: str  # lexicon entry id or rule name
    kind: str  # exact | variant | phonetic | model
    time: tuple[float, float] | None = None  # stream time of the match, when known
    detail: str = ""  # finer grade, e.g. pinyin | fuzzy-pinyin | near-pinyin for phonetic matches

    def to_dict(self) -> dict:
        d = {"match": self.match, "span": list(self.span), "rule": self.rule, "kind": self.kind}
        if self.detail:
            d["detail"] = self.detail
        if self.time is not None:
            d["time"] = [round(self.time[0], 3), round(self.time[1], 3)]
        return d


@dataclass(frozen=True)
class Label:
    """One category the classifier assigns to a text."""

    category: str
    subcategory: str
    score: float
    severity: str
    basis: str
    evidence: tuple[Evidence, ...] = ()

    @property
    def code(self) -> str:
        return f"{self.category}.{self.subcategory}"

    def to_dict(self) -> dict:
        return {
            "category": self.category,
            "subcategory": self.subcategory,
            "score": round(self.score, 4),
            "severity": self.severity,
            "basis": self.basis,
            "evidence": [e.to_dict() for e in self.evidence],
        }


@dataclass(frozen=True)
class Violation:
    """A label raised on an utterance of a stream: the unit a moderator reviews."""

    stream_id: str
    source: str
    utterance_id: str
    start: float
    end: float
    text: str
    label: Label
    asr_model: str
    classifier_version: str
    clip: str = ""  # path relative to the output folder
    clip_start: float = 0.0  # stream time at which the clip begins
    # live streams only: wall-clock time of the utterance start, when the violation was durably
    # written, and the seconds from the end of the utterance to that write
    wall_start: str = ""
    detected_at: str = ""
    latency: float | None = None

    @property
    def violation_id(self) -> str:
        return stable_id(self.utterance_id, self.label.code)

    def to_dict(self) -> dict:
        return {
            "id": self.violation_id,
            "stream_id": self.stream_id,
            "source": self.source,
            "utterance_id": self.utterance_id,
            "start": round(self.start, 3),
            "end": round(self.end, 3),
            "category": self.label.category,
            "subcategory": self.label.subcategory,
            "severity": self.label.severity,
            "score": round(self.label.score, 4),
            "text": self.text,
            "evidence": [e.to_dict() for e in self.label.evidence],
            "basis": self.label.basis,
            "clip": self.clip,
            "clip_start": round(self.clip_start, 3),
            "asr_model": self.asr_model,
            "classifier_version": self.classifier_version,
        } | (
            {
                "wall_start": self.wall_start,
                "detected_at": self.detected_at,
                "latency": None if self.latency is None else round(self.latency, 3),
            }
            if self.detected_at
            else {}
        )


@dataclass(frozen=True)
class SegmentFailure:
    """A window of utterances that could not be moderated after a bounded number of tries
    (a poison segment, a worker that kept dying): recorded with its reason, never dropped."""

    stream_id: str
    source: str
    index: int  # the window's place in the stream (the same on every run)
    start: float  # stream time of its first utterance
    end: float  # and of the end of its last
    reason: str
    tries: int

    def to_dict(self) -> dict:
        return {
            "stream_id": self.stream_id,
            "source": self.source,
            "window": self.index,
            "start": round(self.start, 3),
            "end": round(self.end, 3),
            "reason": self.reason,
            "tries": self.tries,
        }


@dataclass
class StreamResult:
    """Everything the pipeline produced for one stream (or why it failed)."""

    source: str
    stream: Stream | None = None
    transcripts: list[Transcript] = field(default_factory=list)
    violations: list[Violation] = field(default_factory=list)
    error: str = ""
    seconds: float = 0.0  # wall time spent
    failures: list[SegmentFailure] = field(default_factory=list)  # segments given up on

    @property
    def ok(self) -> bool:
        return not self.error


__all__ = [
    "SAMPLE_RATE",
    "Evidence",
    "Label",
    "MediaInfo",
    "SegmentFailure",
    "Stream",
    "StreamResult",
    "Transcript",
    "Utterance",
    "Violation",
    "Word",
    "stable_id",
]
