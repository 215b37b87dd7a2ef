"""The run manifest (``manifest.db`` in ``--out``): what a batch run has finished, so a run that
was killed can be started again with the same ``--out`` and redo only what is missing.

Per input it keeps a fingerprint (size and modification time of the file, and a hash of every
setting that changes results, classifier version included), the stream header, and every
finished window with its transcripts and violations.  Each window is committed on its own
(SQLite WAL, ``synchronous=FULL``) the moment the driver receives it, so a crash loses at most
the windows that were still in flight.  On a new run:

* an input whose fingerprint matches and that finished with no failed window is not decoded
  again: its results are rebuilt from the manifest and written out (idempotently, so outputs
  half-written by the killed run are repaired);
* an input that was partly done is decoded and segmented again (cheap, and deterministic) and
  only the windows missing from the manifest, or that failed, go to ASR;
* an input whose file or settings changed starts over.

Results are stored pickled: the manifest is private to the run folder, written and read by
livemod only.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import sqlite3
import threading
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.config import Config
from pipeline.records import Stream, StreamResult, Transcript, Violation
from pipeline.sinks import now_iso

MANIFEST_NAME = "manifest.db"

SCHEMA = """
CREATE TABLE IF NOT EXISTS inputs (
    source TEXT PRIMARY KEY, fingerprint TEXT NOT NULL, stream BLOB, status TEXT NOT NULL,
    updated_at TEXT
);
CREATE TABLE IF NOT EXISTS windows (
    source TEXT NOT NULL, k INTEGER NOT NULL, first_utterance TEXT NOT NULL, result BLOB NOT NULL,
    PRIMARY KEY (source, k)
);
"""

# settings that do not change what a run produces (how it is spread, where it is written)
_NEUTRAL = {
    "ray": True,
    "live": True,
    "output": True,
    "metrics": True,
    "asr": {"workers", "cpu_threads"},
    "classifier": {"reload_interval_s", "model_threads"},
}


def config_hash(config: Config, classifier_version: str) -> str:
    fields = set(type(config).model_fields)
    data = config.model_dump_json(exclude={k: v for k, v in _NEUTRAL.items() if k in fields})
    return hashlib.sha1(f"{data}\x1f{classifier_version}".encode()).hexdigest()[:16]


def source_fingerprint(source: str) -> str | None:
    """Size and modification time of a file (or of an fsspec URL's object); None when unknown."""
    try:
        if "://" not in source or source.startswith("file://"):
            st = os.stat(source.removeprefix("file://"))
            return f"{st.st_size}:{st.st_mtime_ns}"
        import fsspec

        fs, path = fsspec.core.url_to_fs(source)
        info = fs.info(path)
        stamp = info.get("mtime") or info.get("LastModified") or info.get("ETag") or info.get("etag") or ""
        return f"{info.get('size')}:{stamp}"
    except Exception:
        return None


@dataclass
class Entry:
    """What the manifest knows of one input when a run starts."""

    source: str
    fingerprint: str | None
    done: bool = False
    stream: Stream | None = None
    windows: dict[int, tuple[str, list[Transcript], list[Violation]]] = field(default_factory=dict)

    def cached(self, k: int, first_utterance: str) -> tuple[list[Transcript], list[Violation]] | None:
        """The stored results of window ``k``, if it is the same window (same first utterance)."""
        hit = self.windows.get(k)
        if hit is None or hit[0] != first_utterance:
            return None
        return hit[1], hit[2]

    def result(self) -> StreamResult:
        """A finished input rebuilt from the manifest, as the run that finished it produced it."""
        result = StreamResult(self.source, stream=self.stream)
        for k in sorted(self.windows):
            result.transcripts += self.windows[k][1]
            result.violations += self.windows[k][2]
        return result


class Manifest:
    def __init__(self, out_dir: str | Path, config: Config, classifier_version: str) -> None:
        self.path = Path(out_dir) / MANIFEST_NAME
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.settings = config_hash(config, classifier_version)
        self.conn = sqlite3.connect(str(self.path), timeout=30, check_same_thread=False)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=FULL")
        self.conn.executescript(SCHEMA)
        self._lock = threading.Lock()
        self._fp: dict[str, str | None] = {}
        self.reused_streams = 0
        self.reused_windows = 0

    def open(self, source: str) -> Entry:
        """Look up an input; forgets what was stored for it under another file or settings."""
        fp = source_fingerprint(source)
        fp = f"{fp}/{self.settings}" if fp else None
        self._fp[source] = fp
        entry = Entry(source, fp)
        if fp is None:
            return entry
        with self._lock:
            row = self.conn.execute(
                "SELECT fingerprint, stream, status FROM inputs WHERE source=?", (source,)
            ).fetchone()
            if row is None or row[0] != fp:
                with self.conn:
                    self.conn.execute("DELETE FROM windows WHERE source=?", (source,))
                    self.conn.execute(
                        "INSERT OR REPLACE INTO inputs VALUES (?,?,?,?,?)",
                        (source, fp, None, "running", now_iso()),
                    )
                return entry
            entry.stream = pickle.loads(row[1]) if row[1] else None
            entry.done = row[2] == "done" and entry.stream is not None
            for k, first, blob in self.conn.execute(
                "SELECT k, first_utterance, result FROM windows WHERE source=?", (source,)
            ):
                transcripts, violations = pickle.loads(blob)
                entry.windows[k] = (first, transcripts, violations)
        if entry.done:
            self.reused_streams += 1
        return entry

    def set_stream(self, source: str, stream: Stream) -> None:
        if self._fp.get(source) is None:
            return
        with self._lock, self.conn:
            self.conn.execute(
                "UPDATE inputs SET stream=?, updated_at=? WHERE source=?",
                (pickle.dumps(stream), now_iso(), source),
            )

    def add_window(
        self, source: str, k: int, first_utterance: str, transcripts: list[Transcript], violations
    ) -> None:
        """Record a finished window durably (committed before this returns)."""
        if self._fp.get(source) is None:
            return
        blob = pickle.dumps((transcripts, violations))
        with self._lock, self.conn:
            self.conn.execute(
                "INSERT OR REPLACE INTO windows VALUES (?,?,?,?)", (source, k, first_utterance, blob)
            )

    def finish(self, source: str, result: StreamResult) -> None:
        """An input is done when it has a stream and no failed window or error."""
        if self._fp.get(source) is None:
            return
        status = (
            "done" if result.stream is not None and not result.error and not result.failures else "partial"
        )
        with self._lock, self.conn:
            self.conn.execute(
                "UPDATE inputs SET status=?, updated_at=? WHERE source=?", (status, now_iso(), source)
            )

    def close(self) -> None:
        self.conn.close()


__all__ = ["MANIFEST_NAME", "Entry", "Manifest", "config_hash", "source_fingerprint"]
