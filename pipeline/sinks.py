"""Writers for pipeline results: JSONL, subtitles and the SQLite database.

Every writer is idempotent per stream: writing a stream again replaces what was written for
it before, so running the same inputs twice leaves no duplicates.  JSON is UTF-8 with
``ensure_ascii=False`` so Chinese stays readable.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from datetime import datetime, timezone
from pathlib import Path

from sqlalchemy import bindparam, text

from pipeline.db import database_url, ensure_schema, is_url, make_engine, sqlite_path, transaction
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


# -- the moderation database (SQLite file or PostgreSQL URL) --


def _upsert(table: str, columns: tuple[str, ...], key: tuple[str, ...], keep: tuple[str, ...] = ()) -> str:
    """``INSERT … ON CONFLICT (key) DO UPDATE`` (SQLite ≥ 3.24 and PostgreSQL alike)."""
    update = ", ".join(f"{c}=excluded.{c}" for c in columns if c not in key and c not in keep)
    return (
        f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join(':' + c for c in columns)}) "
        f"ON CONFLICT ({', '.join(key)}) DO UPDATE SET {update}"
    )


def database_target(out: Path, database: str) -> str | Path:
    """``output.database``: a URL as it is, an absolute path, or a file name inside ``--out``."""
    if is_url(database) or Path(database).is_absolute():
        return database
    return Path(out) / database


class Database:
    """The moderation database: streams, utterances, violations, gaps and lost utterances.

    ``target`` is a file path (SQLite, the default) or a database URL (``postgresql://…``).
    Every method is one transaction, retried whole when the connection drops.
    """

    def __init__(self, target: str | Path) -> None:
        self.url = database_url(target)
        self.path = sqlite_path(self.url)
        self.engine = make_engine(target)
        ensure_schema(self.engine)

    def close(self) -> None:
        self.engine.dispose()

    def _tx(self, work, what: str = "write"):
        return transaction(self.engine, work, what)

    def record_input(self, source: str, stream_id: str, status: str, error: str = "") -> None:
        row = {
            "source": source,
            "stream_id": stream_id,
            "status": status,
            "error": error,
            "updated_at": now_iso(),
        }
        self._tx(lambda c: c.execute(text(_INPUT_UPSERT), row))

    def write_stream(self, result: StreamResult, asr_model: str, classifier_version: str) -> None:
        """Replace everything known about one stream, in one transaction (moderators' decisions
        on violations that are found again are kept)."""
        s = result.stream
        assert s is not None
        ts = now_iso()
        row = {
            "stream_id": s.stream_id,
            "source": s.source,
            "duration": s.media.duration,
            "has_video": int(s.media.has_video),
            "format": s.media.format_name,
            "asr_model": asr_model,
            "classifier_version": classifier_version,
            "utterances": len(result.transcripts),
            "violations": len(result.violations),
            "processed_at": ts,
        }
        keep = [v.violation_id for v in result.violations]

        def work(c) -> None:
            c.execute(text(_STREAM_UPSERT), row)
            c.execute(text("DELETE FROM utterances WHERE stream_id=:s"), {"s": s.stream_id})
            stale = text("DELETE FROM violations WHERE stream_id=:s AND id NOT IN :keep").bindparams(
                bindparam("keep", expanding=True)
            )
            c.execute(stale, {"s": s.stream_id, "keep": keep})
            self._insert(c, result.transcripts, result.violations, ts)

        self._tx(work, f"writing stream {s.stream_id}")

    @staticmethod
    def _insert(c, transcripts: list[Transcript], violations: list[Violation], ts: str) -> None:
        if transcripts:
            c.execute(text(_UTTERANCE_UPSERT), [_utterance_row(t) for t in transcripts])
        if violations:
            c.execute(text(_VIOLATION_UPSERT), [_violation_row(v, ts) for v in violations])

    def add(self, transcripts: list[Transcript], violations: list[Violation]) -> None:
        """Write (or rewrite) some utterances and violations of a stream as they come (live)."""
        ts = now_iso()
        self._tx(lambda c: self._insert(c, transcripts, violations, ts))

    def set_clip(self, violation_ids: list[str], clip: str, clip_start: float | None = None) -> None:
        """Point violations at their clip (``clip=""``: none could be cut)."""
        if not violation_ids:
            return
        rows = [{"id": v, "clip": clip, "clip_start": clip_start} for v in violation_ids]
        sql = (
            "UPDATE violations SET clip=:clip, clip_start=:clip_start WHERE id=:id"
            if clip_start is not None
            else "UPDATE violations SET clip=:clip WHERE id=:id"
        )
        self._tx(lambda c: c.execute(text(sql), rows))

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
        row = {
            "stream_id": stream_id,
            "source": source,
            "duration": duration,
            "has_video": int(has_video),
            "format": "live",
            "asr_model": asr_model,
            "classifier_version": classifier_version,
            "processed_at": now_iso(),
        }
        self._tx(lambda c: c.execute(text(_LIVE_STREAM_UPSERT), row))

    def add_gap(
        self, stream_id: str, start: float, end: float, start_wall: str, end_wall: str, reason: str
    ) -> None:
        row = {
            "stream_id": stream_id,
            "start_s": start,
            "end_s": end,
            "start_wall": start_wall,
            "end_wall": end_wall,
            "reason": reason,
        }
        self._tx(lambda c: c.execute(text(_GAP_UPSERT), row))

    def add_lost(self, stream_id: str, start: float, end: float, reason: str) -> None:
        """An utterance that could not be moderated: recorded, never silently dropped."""
        row = {
            "stream_id": stream_id,
            "start_s": start,
            "end_s": end,
            "reason": reason,
            "recorded_at": now_iso(),
        }
        self._tx(lambda c: c.execute(text(_LOST_UPSERT), row))

    def write_failures(self, stream_id: str, failures: list[SegmentFailure]) -> None:
        """Replace the failed segments recorded for a stream (batch: windows given up on)."""
        ts = now_iso()
        rows = [
            {
                "stream_id": f.stream_id,
                "window_index": f.index,
                "source": f.source,
                "start_s": round(f.start, 3),
                "end_s": round(f.end, 3),
                "reason": f.reason,
                "tries": f.tries,
                "recorded_at": ts,
            }
            for f in failures
        ]

        def work(c) -> None:
            c.execute(text("DELETE FROM failed WHERE stream_id=:s"), {"s": stream_id})
            if rows:
                c.execute(text(_FAILED_INSERT), rows)

        self._tx(work, f"recording failed segments of {stream_id}")

    def count(self, table: str) -> int:
        with self.engine.connect() as c:
            return c.execute(text(f"SELECT COUNT(*) FROM {table}")).scalar_one()

    def rows(self, sql: str, **params) -> list[dict]:
        """Read helper for reports and tests: a query's rows as dicts."""
        with self.engine.connect() as c:
            return [dict(r) for r in c.execute(text(sql), params).mappings()]


def _utterance_row(t: Transcript) -> dict:
    d = t.to_dict()
    return {
        "id": d["id"],
        "stream_id": d["stream_id"],
        "idx": d["index"],
        "start_s": d["start"],
        "end_s": d["end"],
        "text": d["text"],
        "words": json.dumps(d["words"], ensure_ascii=False),
        "avg_logprob": d["avg_logprob"],
        "no_speech_prob": d["no_speech_prob"],
        "filtered": d["filtered"],
    }


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


def _violation_row(v: Violation, ts: str) -> dict:
    d = v.to_dict()
    return {
        "id": d["id"],
        "stream_id": d["stream_id"],
        "utterance_id": d["utterance_id"],
        "source": d["source"],
        "start_s": d["start"],
        "end_s": d["end"],
        "category": d["category"],
        "subcategory": d["subcategory"],
        "severity": d["severity"],
        "score": d["score"],
        "text": d["text"],
        "evidence": json.dumps(d["evidence"], ensure_ascii=False),
        "basis": d["basis"],
        "clip": d["clip"],
        "clip_start": d["clip_start"],
        "asr_model": d["asr_model"],
        "classifier_version": d["classifier_version"],
        "wall_start": d.get("wall_start"),
        "detected_at": d.get("detected_at"),
        "latency": d.get("latency"),
        "created_at": ts,
        "updated_at": ts,
    }


_UTTERANCE_COLUMNS = (
    "id",
    "stream_id",
    "idx",
    "start_s",
    "end_s",
    "text",
    "words",
    "avg_logprob",
    "no_speech_prob",
    "filtered",
)
_STREAM_COLUMNS = (
    "stream_id",
    "source",
    "duration",
    "has_video",
    "format",
    "asr_model",
    "classifier_version",
    "utterances",
    "violations",
    "processed_at",
)
_INPUT_UPSERT = _upsert("inputs", ("source", "stream_id", "status", "error", "updated_at"), ("source",))
_STREAM_UPSERT = _upsert("streams", _STREAM_COLUMNS, ("stream_id",))
# a live stream row: its source, video flag and format are set once; counts are not kept live
_LIVE_STREAM_UPSERT = _upsert(
    "streams",
    tuple(c for c in _STREAM_COLUMNS if c not in ("utterances", "violations")),
    ("stream_id",),
    keep=("source", "has_video", "format"),
)
_UTTERANCE_UPSERT = _upsert("utterances", _UTTERANCE_COLUMNS, ("id",), keep=("stream_id", "idx"))
# a violation found again keeps its review status and creation time
_VIOLATION_UPSERT = _upsert("violations", _VIOLATION_COLUMNS, ("id",), keep=("created_at",))
_GAP_UPSERT = _upsert(
    "gaps", ("stream_id", "start_s", "end_s", "start_wall", "end_wall", "reason"), ("stream_id", "start_s")
)
_LOST_UPSERT = _upsert(
    "lost", ("stream_id", "start_s", "end_s", "reason", "recorded_at"), ("stream_id", "start_s")
)
_FAILED_INSERT = (
    "INSERT INTO failed (stream_id, window_index, source, start_s, end_s, reason, tries, recorded_at) "
    "VALUES (:stream_id, :window_index, :source, :start_s, :end_s, :reason, :tries, :recorded_at)"
)
