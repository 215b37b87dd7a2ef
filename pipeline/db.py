"""One way to reach the moderation database: SQLite by default, PostgreSQL for many writers.

A target is a file path (SQLite) or a SQLAlchemy URL (``postgresql://user:pw@host/db``; the
psycopg 3 driver is used).  Every write goes through :func:`transaction`, which retries a whole
transaction when the connection drops or SQLite is busy; writes are idempotent upserts keyed by
stable ids, so a retry never duplicates a row.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError, OperationalError

log = logging.getLogger(__name__)

T = TypeVar("T")

SCHEMA = """
CREATE TABLE IF NOT EXISTS streams (
    stream_id TEXT PRIMARY KEY, source TEXT NOT NULL, duration DOUBLE PRECISION, has_video INTEGER,
    format TEXT, asr_model TEXT, classifier_version TEXT, utterances INTEGER, violations INTEGER,
    processed_at TEXT
);
CREATE TABLE IF NOT EXISTS inputs (
    source TEXT PRIMARY KEY, stream_id TEXT, status TEXT NOT NULL, error TEXT, updated_at TEXT
);
CREATE TABLE IF NOT EXISTS utterances (
    id TEXT PRIMARY KEY, stream_id TEXT NOT NULL, idx INTEGER NOT NULL, start_s DOUBLE PRECISION NOT NULL,
    end_s DOUBLE PRECISION NOT NULL, text TEXT, words TEXT, avg_logprob DOUBLE PRECISION,
    no_speech_prob DOUBLE PRECISION, filtered TEXT
);
CREATE INDEX IF NOT EXISTS utterances_stream ON utterances(stream_id, start_s);
CREATE TABLE IF NOT EXISTS violations (
    id TEXT PRIMARY KEY, stream_id TEXT NOT NULL, utterance_id TEXT NOT NULL, source TEXT,
    start_s DOUBLE PRECISION NOT NULL, end_s DOUBLE PRECISION NOT NULL, category TEXT NOT NULL,
    subcategory TEXT NOT NULL, severity TEXT, score DOUBLE PRECISION, text TEXT, evidence TEXT, basis TEXT,
    clip TEXT, clip_start DOUBLE PRECISION, asr_model TEXT, classifier_version TEXT, wall_start TEXT,
    detected_at TEXT, latency DOUBLE PRECISION, status TEXT NOT NULL DEFAULT 'pending', created_at TEXT,
    updated_at TEXT
);
CREATE TABLE IF NOT EXISTS gaps (
    stream_id TEXT NOT NULL, start_s DOUBLE PRECISION NOT NULL, end_s DOUBLE PRECISION NOT NULL,
    start_wall TEXT, end_wall TEXT, reason TEXT, PRIMARY KEY (stream_id, start_s)
);
CREATE TABLE IF NOT EXISTS lost (
    stream_id TEXT NOT NULL, start_s DOUBLE PRECISION NOT NULL, end_s DOUBLE PRECISION NOT NULL, reason TEXT,
    recorded_at TEXT, PRIMARY KEY (stream_id, start_s)
);
CREATE TABLE IF NOT EXISTS failed (
    stream_id TEXT NOT NULL, window_index INTEGER NOT NULL, source TEXT, start_s DOUBLE PRECISION NOT NULL,
    end_s DOUBLE PRECISION NOT NULL, reason TEXT, tries INTEGER, recorded_at TEXT,
    PRIMARY KEY (stream_id, window_index)
);
CREATE INDEX IF NOT EXISTS violations_stream ON violations(stream_id, start_s);
CREATE INDEX IF NOT EXISTS violations_category ON violations(category, subcategory)
"""

RETRIES = 6


class DatabaseError(Exception):
    """The database cannot be reached or written (after retries); one line for the user."""


def database_url(target: str | Path) -> str:
    """``out/moderation.db`` → ``sqlite:////abs/out/moderation.db``; ``postgresql://…`` uses psycopg 3."""
    s = str(target)
    if s.startswith(("postgresql://", "postgres://")):
        return "postgresql+psycopg://" + s.split("://", 1)[1]
    if "://" in s:
        return s
    return f"sqlite:///{Path(s).expanduser().resolve()}"


def is_url(target: str | Path) -> bool:
    return "://" in str(target)


def sqlite_path(url: str) -> Path | None:
    return Path(url[len("sqlite:///") :]) if url.startswith("sqlite:///") else None


def make_engine(target: str | Path, must_exist: bool = False) -> Engine:
    url = database_url(target)
    path = sqlite_path(url)
    if path is not None:
        if must_exist and not path.is_file():
            raise DatabaseError(
                f"{path}: no moderation database here (run `livemod batch` or `livemod live`)"
            )
        path.parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _pragmas(conn, _record):
            cur = conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

        return engine
    try:
        return create_engine(url, pool_pre_ping=True, pool_size=4, max_overflow=4)
    except Exception as exc:  # bad URL, missing driver
        raise DatabaseError(f"{_redact(url)}: {exc}") from None


def _redact(url: str) -> str:
    """Never print a password: ``postgresql://u:secret@h/db`` → ``postgresql://u:***@h/db``."""
    head, sep, tail = url.partition("://")
    if "@" in tail and ":" in tail.split("@", 1)[0]:
        user = tail.split("@", 1)[0].split(":", 1)[0]
        tail = f"{user}:***@{tail.split('@', 1)[1]}"
    return head + sep + tail


def _causes(exc: BaseException | None):
    """``exc`` and what it was raised from or while handling: a server that kills the connection
    during a pipelined write shows as psycopg's "cannot exit pipeline mode while busy", raised
    while handling the AdminShutdown ("terminating connection ...") that says what happened."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def _retryable(exc: Exception) -> bool:
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    if isinstance(exc, OperationalError):
        msgs = [str(e).lower() for e in _causes(exc.orig)]
        return any(
            s in msg
            for msg in msgs
            for s in (
                "database is locked",
                "database is busy",
                "server closed the connection",
                "terminating connection",
                "connection refused",
                "could not connect",
                "connection is closed",
                "consuming input failed",
                "ssl syscall",
                # psycopg, when the server dropped the connection in the middle of a pipelined
                # write: the ROLLBACK on the way out cannot even be sent
                "cannot exit pipeline mode",
            )
        )
    return False


def transaction(engine: Engine, work: Callable[[Connection], T], what: str = "write") -> T:
    """Run ``work`` in one transaction; on a dropped connection or a busy SQLite, roll back and
    run it again (exponential backoff, bounded), so nothing is lost and, the writes being
    idempotent, nothing is duplicated."""
    delay = 0.1
    for attempt in range(1, RETRIES + 1):
        try:
            with engine.begin() as conn:
                return work(conn)
        except (OperationalError, DBAPIError) as exc:
            if not _retryable(exc) or attempt == RETRIES:
                reason = str(getattr(exc, "orig", exc)).strip().splitlines()[0]
                raise DatabaseError(f"{what} failed after {attempt} tries: {reason}") from exc
            log.warning("database %s: %s; retrying in %.1f s", what, str(exc.orig).strip()[:120], delay)
            time.sleep(delay)
            delay = min(delay * 2, 3.0)
    raise AssertionError("unreachable")


def statements(script: str) -> list[str]:
    return [s.strip() for s in script.split(";") if s.strip()]


def ensure_schema(engine: Engine) -> None:
    def create(conn: Connection) -> None:
        if engine.dialect.name == "postgresql":
            # several workers may start at once: CREATE TABLE IF NOT EXISTS races in PostgreSQL
            conn.execute(text("SELECT pg_advisory_xact_lock(20261128)"))
        for stmt in statements(SCHEMA):
            conn.execute(text(stmt))

    transaction(engine, create, "schema")
