"""The moderation database under load and faults, on SQLite and on a real PostgreSQL server.

PostgreSQL tests need a server: ``.ci/run`` starts one and sets ``LIVEMOD_TEST_PG`` (a URL of a
role allowed to create databases).  Elsewhere they are skipped when no server answers.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import threading
import time
import uuid

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError

from pipeline.db import DatabaseError, database_url, make_engine, transaction
from pipeline.records import Evidence, Label, Transcript, Utterance, Violation
from pipeline.sinks import Database
from tests.conftest import CLIP

PG_ADMIN = os.environ.get("LIVEMOD_TEST_PG", "postgresql://livemod:livemod@127.0.0.1:5432/livemod_test")


def _pg_available() -> bool:
    try:
        with create_engine(database_url(PG_ADMIN)).connect() as c:
            c.execute(text("SELECT 1"))
        return True
    except Exception:
        return False


PG_OK = _pg_available()
needs_pg = pytest.mark.skipif(
    not PG_OK and not os.environ.get("CI"),
    reason=f"no PostgreSQL at {PG_ADMIN} (set LIVEMOD_TEST_PG; .ci/run starts one)",
)


@pytest.fixture
def pg_url():
    """A fresh, empty database on the test server, dropped afterwards."""
    assert PG_OK, f"PostgreSQL expected at {PG_ADMIN} (LIVEMOD_TEST_PG)"
    name = f"livemod_t_{uuid.uuid4().hex[:10]}"
    admin = create_engine(database_url(PG_ADMIN), isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(text(f"CREATE DATABASE {name}"))
    url = PG_ADMIN.rsplit("/", 1)[0] + "/" + name
    yield url
    with admin.connect() as c:
        c.execute(text(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname='{name}'"))
        c.execute(text(f"DROP DATABASE IF EXISTS {name}"))
    admin.dispose()


def records(stream: str, n: int, first: int = 0) -> tuple[list[Transcript], list[Violation]]:
    ts, vs = [], []
    for i in range(first, first + n):
        t = Transcript(
            Utterance(stream, i, i * 5.0, i * 5.0 + 4.5), f"第{i}句 加我微信私聊", asr_model="test"
        )
        label = Label(
            "fraud",
            "off_platform",
            0.9,
            "high",
            "《电子商务法》",
            (Evidence("微信", (5, 7), "fr.off.weixin", "exact"),),
        )
        ts.append(t)
        vs.append(
            Violation(
                stream,
                "rtmp://x",
                t.utterance.utterance_id,
                t.utterance.start,
                t.utterance.end,
                t.text,
                label,
                "test",
                "test",
            )
        )
    return ts, vs


def _writer(target: str, stream: str, batches: int, per_batch: int) -> None:
    db = Database(target)
    for b in range(batches):
        db.add(*records(stream, per_batch, b * per_batch))
    db.close()


def concurrent_writers(target: str, workers: int = 4, batches: int = 25, per_batch: int = 8) -> None:
    ctx = mp.get_context("spawn")
    procs = [
        ctx.Process(target=_writer, args=(target, f"live-{w}", batches, per_batch)) for w in range(workers)
    ]
    for p in procs:
        p.start()
    # meanwhile a "batch job" replaces one stream again and again in this process
    db = Database(target)
    from pipeline.records import MediaInfo, Stream, StreamResult

    stream = Stream("batch-0", "a.mp4", MediaInfo("a.mp4", 100.0, True, False))
    for _ in range(10):
        ts, vs = records("batch-0", 20)
        db.write_stream(StreamResult("a.mp4", stream, ts, vs), "test", "test")
    for p in procs:
        p.join(timeout=300)
        assert p.exitcode == 0, f"a writer failed (exit {p.exitcode})"
    expected = workers * batches * per_batch + 20
    assert db.count("violations") == expected
    assert db.count("utterances") == expected
    ids = db.rows("SELECT id FROM violations")
    assert len({r["id"] for r in ids}) == expected
    db.close()


def _dropped_mid_pipeline(last: str) -> OperationalError:
    """What SQLAlchemy raises when PostgreSQL kills the connection during a pipelined write:
    psycopg's AdminShutdown, then, while handling it, ``last`` (the ROLLBACK that cannot be sent)."""
    try:
        try:
            raise RuntimeError("terminating connection due to administrator command")
        except RuntimeError:
            raise RuntimeError(last)  # noqa: B904 - chained implicitly, as psycopg's is
    except RuntimeError as orig:
        return OperationalError("ROLLBACK", {}, orig)


@pytest.mark.parametrize(
    "last",
    [
        "sending query failed: cannot exit pipeline mode while busy",  # its own words
        "PQsendQuery not allowed here",  # only the exception it was raised while handling says why
    ],
)
def test_a_write_cut_off_mid_pipeline_is_retried(tmp_path, last):
    """CI once lost a write this way (test_dropped_postgres_connections_lose_and_duplicate_nothing):
    the retry must look past the last error to the dropped connection behind it."""
    engine = make_engine(f"sqlite:///{tmp_path / 'x.db'}")
    calls = []

    def work(conn):
        calls.append(1)
        if len(calls) == 1:
            raise _dropped_mid_pipeline(last)
        return "written"

    assert transaction(engine, work) == "written" and len(calls) == 2

    def bad_sql(conn):
        calls.append(1)
        raise OperationalError("SELEC 1", {}, RuntimeError("syntax error at or near SELEC"))

    calls.clear()
    with pytest.raises(DatabaseError, match="after 1 tries: syntax error"):  # not a dropped connection
        transaction(engine, bad_sql)
    assert len(calls) == 1


def test_concurrent_writers_on_sqlite(tmp_path):
    concurrent_writers(str(tmp_path / "moderation.db"))


@needs_pg
def test_concurrent_writers_on_postgres(pg_url):
    concurrent_writers(pg_url)


@needs_pg
def test_dropped_postgres_connections_lose_and_duplicate_nothing(pg_url):
    """Kill the writer's server connections again and again while it writes."""
    db = Database(pg_url)
    killer = make_engine(pg_url)
    stop = threading.Event()
    kills = []

    def kill_loop():
        dbname = pg_url.rsplit("/", 1)[1]
        while not stop.is_set():
            time.sleep(0.05)
            with killer.connect() as c:
                n = c.execute(
                    text(
                        "SELECT COUNT(pg_terminate_backend(pid)) FROM pg_stat_activity "
                        "WHERE datname=:d AND pid <> pg_backend_pid()"
                    ),
                    {"d": dbname},
                ).scalar()
                c.commit()
            if n:
                kills.append(n)

    t = threading.Thread(target=kill_loop, daemon=True)
    t.start()
    for b in range(60):
        db.add(*records("live-x", 10, b * 10))
    stop.set()
    t.join()
    assert len(kills) >= 3, "the fault was not injected"
    assert db.count("violations") == 600 and db.count("utterances") == 600
    rows = db.rows("SELECT id, start_s FROM violations ORDER BY start_s")
    assert len({r["id"] for r in rows}) == 600
    assert [r["start_s"] for r in rows] == [i * 5.0 for i in range(600)]
    db.close()
    killer.dispose()


@needs_pg
def test_batch_and_review_console_on_postgres(pg_url, review_base, tmp_path):
    """``livemod batch`` into PostgreSQL gives the records the SQLite run gave; the console
    serves them, records decisions and keeps the audit log append-only there too."""
    import io

    from fastapi.testclient import TestClient

    from pipeline.cli import main
    from pipeline.review.app import ReviewSettings, create_app
    from pipeline.review.bench import log_in

    out = tmp_path / "out"
    code = main(
        ["batch", str(CLIP), "--out", str(out), "--no-ray", "--quiet", "--set", f"output.database={pg_url}"]
    )
    assert code == 0
    assert not (out / "moderation.db").exists()
    pg, lite = Database(pg_url), Database(review_base / "moderation.db")
    q = "SELECT id, stream_id, category, subcategory, start_s, end_s, clip FROM violations WHERE stream_id LIKE 'clip-%' ORDER BY id"
    assert pg.rows(q) == lite.rows(q) and len(pg.rows(q)) == 2
    assert "clip-" in (out / "report.html").read_text(encoding="utf-8")

    mp_ = pytest.MonkeyPatch()
    mp_.setattr("sys.stdin", io.StringIO("lead-password-1\n"))
    assert main(["user", "add", "lena", "--role", "lead", "--db", pg_url, "--password-stdin"]) == 0
    mp_.undo()
    client = TestClient(
        create_app(ReviewSettings(db=pg_url, media_root=out)), base_url="http://127.0.0.1:8000"
    )
    assert log_in(client, "lena", "lead-password-1").status_code == 200
    csrf = client.get("/api/me").json()["csrf"]
    queue = client.get("/api/violations", params={"category": "false_claim"}).json()
    assert queue["total"] == 2
    vid = queue["items"][0]["id"]
    assert client.get(client.get(f"/api/violations/{vid}").json()["clip_url"]).status_code == 200
    r = client.post(
        f"/api/violations/{vid}/decision", json={"action": "confirm"}, headers={"X-CSRF-Token": csrf}
    )
    assert r.json()["status"] == "confirmed"
    assert client.get("/api/violations", params={"status": "confirmed"}).json()["total"] == 1
    with pg.engine.connect() as c, pytest.raises(Exception, match="append-only"):
        c.execute(text("DELETE FROM audit"))
    pg.close()
    lite.close()
