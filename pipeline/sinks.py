"""Writers for pipeline results: JSONL, subtitles and the SQLite database.

Every writer is idempotent per stream: writing a stream again replaces what was written for
it before, so running the same inputs twice leaves no duplicates.  JSON is UTF-8 with
``ensure_ascii=False`` so Chinese stays readable.
"""

from __future__ import annotations

import json
import os
import sqlite3
import tempfile
from collections.abc import Iterable, Iterator
from datetime import datetime, timezone
from pathlib import Path

from pipeline.records import SegmentFailure, StreamResult, Transcript, Violation


def dumps(obj: dict) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def atomic_write(path: Path, text: str) -> None:
    """Write a file so a reader never sees it half-written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


class StreamJsonl:
    """A JSONL file of records from many streams (``violations.jsonl``), replaced per stream."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def replace_stream(self, stream_id: str, records: Iterable[dict]) -> None:
        lines = []
        if self.path.exists():
            with open(self.path, encoding="utf-8") as f:
                lines = [ln for ln in f if ln.strip() and json.loads(ln).get("stream_id") != stream_id]
        lines += [dumps(r) + "\n" for r in records]
        atomic_write(self.path, "".join(lines))


# -- subtitles: one iterator, two formats that differ in the decimal marker (as in whisper) --


def _timestamp(seconds: float, marker: str) -> str:
    ms = int(round(seconds * 1000))
    h, ms = divmod(ms, 3_600_000)
    m, ms = divmod(ms, 60_000)
    s, ms = divmod(ms, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{marker}{ms:03d}"


def _cues(transcripts: Iterable[Transcript], marker: str) -> Iterator[tuple[str, str, str]]:
    for t in transcripts:
        if t.kept:
            u = t.utterance
            yield _timestamp(u.start, marker), _timestamp(u.end, marker), t.text


class TranscriptWriter:
    extension = ""

    def render(self, transcripts: list[Transcript]) -> str:  # pragma: no cover - abstract
        raise NotImplementedError

    def write(self, transcripts: list[Transcript], folder: Path, stream_id: str) -> Path:
        path = folder / f"{stream_id}.{self.extension}"
        atomic_write(path, self.render(transcripts))
        return path


class JsonlTranscript(TranscriptWriter):
    extension = "jsonl"

    def render(self, transcripts: list[Transcript]) -> str:
        return "".join(dumps(t.to_dict()) + "\n" for t in transcripts)


class SrtTranscript(TranscriptWriter):
    extension = "srt"

    def render(self, transcripts: list[Transcript]) -> str:
        return "".join(
            f"{i}\n{a} --> {b}\n{text}\n\n" for i, (a, b, text) in enumerate(_cues(transcripts, ","), start=1)
        )


class VttTranscript(TranscriptWriter):
    extension = "vtt"

    def render(self, transcripts: list[Transcript]) -> str:
        return "WEBVTT\n\n" + "".join(f"{a} --> {b}\n{text}\n\n" for a, b, text in _cues(transcripts, "."))


TRANSCRIPT_WRITERS = (JsonlTranscript(), SrtTranscript(), VttTranscript())


# -- SQLite --

SCHEMA = """
CREATE TABLE IF NOT EXISTS streams (
    stream_id TEXT PRIMARY KEY, source TEXT NOT NULL, duration REAL, has_video INTEGER,
    format TEXT, asr_model TEXT, classifier_version TEXT, utterances INTEGER, violations INTEGER,
    processed_at TEXT
);
CREATE TABLE IF NOT EXISTS inputs (
    source TEXT PRIMARY KEY, stream_id TEXT, status TEXT NOT NULL, error TEXT, updated_at TEXT
);
CREATE TABLE IF NOT EXISTS utterances (
    id TEXT PRIMARY KEY, stream_id TEXT NOT NULL, idx INTEGER NOT NULL, start_s REAL NOT NULL,
    end_s REAL NOT NULL, text TEXT, words TEXT, avg_logprob REAL, no_speech_prob REAL, filtered TEXT
);
CREATE INDEX IF NOT EXISTS utterances_stream ON utterances(stream_id, start_s);
CREATE TABLE IF NOT EXISTS violations (
    id TEXT PRIMARY KEY, stream_id TEXT NOT NULL, utterance_id TEXT NOT NULL, source TEXT,
    start_s REAL NOT NULL, end_s REAL NOT NULL, category TEXT NOT NULL, subcategory TEXT NOT NULL,
    severity TEXT, score REAL, text TEXT, evidence TEXT, basis TEXT, clip TEXT, clip_start REAL,
    asr_model TEXT, classifier_version TEXT, wall_start TEXT, detected_at TEXT, latency REAL,
    status TEXT NOT NULL DEFAULT 'pending', created_at TEXT, updated_at TEXT
);
CREATE TABLE IF NOT EXISTS gaps (
    stream_id TEXT NOT NULL, start_s REAL NOT NULL, end_s REAL NOT NULL, start_wall TEXT,
    end_wall TEXT, reason TEXT, PRIMARY KEY (stream_id, start_s)
);
CREATE TABLE IF NOT EXISTS lost (
    stream_id TEXT NOT NULL, start_s REAL NOT NULL, end_s REAL NOT NULL, reason TEXT,
    recorded_at TEXT, PRIMARY KEY (stream_id, start_s)
);
CREATE TABLE IF NOT EXISTS failed (
    stream_id TEXT NOT NULL, window_index INTEGER NOT NULL, source TEXT, start_s REAL NOT NULL,
    end_s REAL NOT NULL, reason TEXT, tries INTEGER, recorded_at TEXT, PRIMARY KEY (stream_id, window_index)
);
CREATE INDEX IF NOT EXISTS violations_stream ON violations(stream_id, start_s);
CREATE INDEX IF NOT EXISTS violations_category ON violations(category, subcategory);
"""


def connect(path: str | Path) -> sqlite3.Connection:
    conn = sqlite3.connect(str(path), timeout=30, check_same_thread=False)  # callers serialise writes
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA busy_timeout=30000")
    conn.executescript(SCHEMA)
    conn.row_factory = sqlite3.Row
    return conn


class Database:
    """The moderation database: streams, utterances and violations (SQLite)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.conn = connect(self.path)

    def close(self) -> None:
        self.conn.close()

    def record_input(self, source: str, stream_id: str, status: str, error: str = "") -> None:
        with self.conn:
            self.conn.execute(
                "INSERT INTO inputs VALUES (?,?,?,?,?) ON CONFLICT(source) DO UPDATE SET "
                "stream_id=excluded.stream_id, status=excluded.status, error=excluded.error, "
                "updated_at=excluded.updated_at",
                (source, stream_id, status, error, now_iso()),
            )

    def write_stream(self, result: StreamResult, asr_model: str, classifier_version: str) -> None:
        """Replace everything known about one stream, in one transaction."""
        s = result.stream
        assert s is not None
        ts = now_iso()
        with self.conn:
            c = self.conn
            c.execute(
                "INSERT INTO streams VALUES (?,?,?,?,?,?,?,?,?,?) ON CONFLICT(stream_id) DO UPDATE SET "
                "source=excluded.source, duration=excluded.duration, has_video=excluded.has_video, "
                "format=excluded.format, asr_model=excluded.asr_model, "
                "classifier_version=excluded.classifier_version, utterances=excluded.utterances, "
                "violations=excluded.violations, processed_at=excluded.processed_at",
                (
                    s.stream_id,
                    s.source,
                    s.media.duration,
                    int(s.media.has_video),
                    s.media.format_name,
                    asr_model,
                    classifier_version,
                    len(result.transcripts),
                    len(result.violations),
                    ts,
                ),
            )
            c.execute("DELETE FROM utterances WHERE stream_id=?", (s.stream_id,))
            keep = [v.violation_id for v in result.violations]
            c.execute(
                f"DELETE FROM violations WHERE stream_id=? AND id NOT IN ({','.join('?' * len(keep))})",
                (s.stream_id, *keep),
            )
            self._insert(result.transcripts, result.violations, ts)

    def _insert(self, transcripts: list[Transcript], violations: list[Violation], ts: str) -> None:
        c = self.conn
        c.executemany(
            "INSERT INTO utterances VALUES (?,?,?,?,?,?,?,?,?,?) ON CONFLICT(id) DO UPDATE SET "
            "start_s=excluded.start_s, end_s=excluded.end_s, text=excluded.text, words=excluded.words, "
            "avg_logprob=excluded.avg_logprob, no_speech_prob=excluded.no_speech_prob, "
            "filtered=excluded.filtered",
            [_utterance_row(t) for t in transcripts],
        )
        c.executemany(
            f"INSERT INTO violations ({', '.join(_VIOLATION_COLUMNS)}) "
            f"VALUES ({','.join('?' * len(_VIOLATION_COLUMNS))}) ON CONFLICT(id) DO UPDATE SET "
            + ", ".join(f"{k}=excluded.{k}" for k in _VIOLATION_COLUMNS if k not in ("id", "created_at")),
            [_violation_row(v, ts) for v in violations],
        )

    def add(self, transcripts: list[Transcript], violations: list[Violation]) -> None:
        """Write (or rewrite) some utterances and violations of a stream as they come (live)."""
        with self.conn:
            self._insert(transcripts, violations, now_iso())

    def upsert_stream(
        self,
        stream_id: str,
        source: str,
        duration: float,
        has_video: bool,
        asr_model: str = "",
        classifier_version: str = "",
    ) -> None:
        """Create or update a stream row without touching its utterances (live streams grow)."""
        with self.conn:
            self.conn.execute(
                "INSERT INTO streams (stream_id, source, duration, has_video, format, asr_model, "
                "classifier_version, processed_at) VALUES (?,?,?,?,?,?,?,?) ON CONFLICT(stream_id) DO UPDATE "
                "SET duration=excluded.duration, asr_model=excluded.asr_model, "
                "classifier_version=excluded.classifier_version, processed_at=excluded.processed_at",
                (
                    stream_id,
                    source,
                    duration,
                    int(has_video),
                    "live",
                    asr_model,
                    classifier_version,
                    now_iso(),
                ),
            )

    def add_gap(
        self, stream_id: str, start: float, end: float, start_wall: str, end_wall: str, reason: str
    ) -> None:
        with self.conn:
            self.conn.execute(
                "INSERT OR REPLACE INTO gaps VALUES (?,?,?,?,?,?)",
                (stream_id, start, end, start_wall, end_wall, reason),
            )

    def add_lost(self, stream_id: str, start: float, end: float, reason: str) -> None:
        """An utterance that could not be moderated: recorded, never silently dropped."""
        with self.conn:
            self.conn.execute(
                "INSERT OR REPLACE INTO lost VALUES (?,?,?,?,?)", (stream_id, start, end, reason, now_iso())
            )

    def write_failures(self, stream_id: str, failures: list[SegmentFailure]) -> None:
        """Replace the failed segments recorded for a stream (batch: poison windows)."""
        ts = now_iso()
        with self.conn:
            self.conn.execute("DELETE FROM failed WHERE stream_id=?", (stream_id,))
            self.conn.executemany(
                "INSERT INTO failed VALUES (?,?,?,?,?,?,?,?)",
                [
                    (
                        f.stream_id,
                        f.index,
                        f.source,
                        round(f.start, 3),
                        round(f.end, 3),
                        f.reason,
                        f.tries,
                        ts,
                    )
                    for f in failures
                ],
            )

    def count(self, table: str) -> int:
        return self.conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]


def _utterance_row(t: Transcript) -> tuple:
    d = t.to_dict()
    return (
        d["id"],
        d["stream_id"],
        d["index"],
        d["start"],
        d["end"],
        d["text"],
        json.dumps(d["words"], ensure_ascii=False),
        d["avg_logprob"],
        d["no_speech_prob"],
        d["filtered"],
    )


_VIOLATION_COLUMNS = (
    "id",
    "stream_id",
    "utterance_id",
    "source",
    "start_s",
    "end_s",
    "category",
    "subcategory",
    "severity",
    "score",
    "text",
    "evidence",
    "basis",
    "clip",
    "clip_start",
    "asr_model",
    "classifier_version",
    "wall_start",
    "detected_at",
    "latency",
    "created_at",
    "updated_at",
)


def _violation_row(v: Violation, ts: str) -> tuple:
    d = v.to_dict()
    return (
        d["id"],
        d["stream_id"],
        d["utterance_id"],
        d["source"],
        d["start"],
        d["end"],
        d["category"],
        d["subcategory"],
        d["severity"],
        d["score"],
        d["text"],
        json.dumps(d["evidence"], ensure_ascii=False),
        d["basis"],
        d["clip"],
        d["clip_start"],
        d["asr_model"],
        d["classifier_version"],
        d.get("wall_start"),
        d.get("detected_at"),
        d.get("latency"),
        ts,
        ts,
    )
