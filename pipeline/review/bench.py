"""``livemod bench review``: the console's queue and filters over a large moderation database.

Seeds a fresh SQLite database with N violations (default 100,000) spread over streams,
categories, scores, statuses and a month of detection times, then times the requests a
moderator's day is made of, through the real app (ASGI, in process), each repeated.
"""

from __future__ import annotations

import json
import random
import statistics
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from sqlalchemy import text

from pipeline.classify.taxonomy import CODES
from pipeline.review.auth import LOGIN_CSRF_COOKIE, hash_password
from pipeline.review.store import Store

SEVERITY = {"false_claim": "medium", "banned_product": "high", "fraud": "high", "vulgar": "medium"}


def seed(db: Path, n: int, streams: int = 200, seed_: int = 7) -> None:
    rng = random.Random(seed_)
    store = Store.open(db, create=True)
    start = datetime(2026, 11, 1, tzinfo=timezone.utc)
    utts, viols = [], []
    for i in range(n):
        stream = f"stream-{i % streams:04d}"
        code = CODES[rng.randrange(len(CODES))]
        cat, sub = code.split(".")
        t = (i // streams) * 7.5
        uid = f"{stream}:{i // streams:05d}"
        body = f"第{i}句 家人们这个产品今天特价，加我微信 {rng.randrange(10**6):06d}"
        created = (start + timedelta(seconds=i * 26)).isoformat(timespec="seconds")
        status = rng.choices(("pending", "confirmed", "dismissed", "escalated"), (70, 15, 12, 3))[0]
        utts.append({"id": uid, "s": stream, "idx": i // streams, "a": t, "b": t + 5, "text": body})
        viols.append(
            {
                "id": f"v{i:07d}",
                "s": stream,
                "u": uid,
                "a": t,
                "b": t + 5,
                "cat": cat,
                "sub": sub,
                "sev": SEVERITY[cat],
                "score": round(rng.uniform(0.3, 1.0), 4),
                "text": body,
                "ev": json.dumps([{"match": "微信", "span": [18, 20], "rule": "seed", "kind": "exact"}]),
                "st": status,
                "t": created,
            }
        )
    with store.engine.begin() as c:
        c.execute(
            text("INSERT INTO streams (stream_id, source, duration) VALUES (:s, :src, 3600)"),
            [{"s": f"stream-{k:04d}", "src": f"rtmp://example/{k}"} for k in range(streams)],
        )
        c.execute(
            text(
                "INSERT INTO utterances (id, stream_id, idx, start_s, end_s, text) "
                "VALUES (:id, :s, :idx, :a, :b, :text)"
            ),
            utts,
        )
        c.execute(
            text(
                "INSERT INTO violations (id, stream_id, utterance_id, start_s, end_s, category, subcategory, "
                "severity, score, text, evidence, status, created_at, updated_at, basis, asr_model, "
                "classifier_version) VALUES (:id, :s, :u, :a, :b, :cat, :sub, :sev, :score, :text, :ev, :st, "
                ":t, :t, 'seeded', 'bench', 'bench')"
            ),
            viols,
        )
    store.add_user("bench", "moderator", hash_password("bench-password"))
    store.close()


def log_in(client, name: str, password: str):
    """Log an in-process client (FastAPI's TestClient) in as a browser would: fetch the login
    page for its CSRF cookie, post the form with it.  Returns the response."""
    client.get("/login")
    return client.post(
        "/login",
        json={"name": name, "password": password},
        headers={"X-CSRF-Token": client.cookies.get(LOGIN_CSRF_COOKIE, "")},
    )


def _time(client, method: str, url: str, repeat: int, **kw) -> list[float]:
    out = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        r = client.request(method, url, **kw)
        out.append((time.perf_counter() - t0) * 1000)
        assert r.status_code == 200, (url, r.status_code, r.text[:200])
    return out


def bench_review(rows: int = 100_000, repeat: int = 20) -> int:
    from fastapi.testclient import TestClient

    from pipeline.review.app import ReviewSettings, create_app

    with tempfile.TemporaryDirectory(prefix="livemod-bench-review-") as tmp:
        db = Path(tmp) / "moderation.db"
        t0 = time.perf_counter()
        seed(db, rows)
        seeded = time.perf_counter() - t0
        client = TestClient(create_app(ReviewSettings(db=str(db))), base_url="http://127.0.0.1")
        r = log_in(client, "bench", "bench-password")
        assert r.status_code == 200, r.text
        csrf = client.get("/api/me").json()["csrf"]
        pending = client.get("/api/violations", params={"per_page": 200}).json()["items"]
        cases = [
            ("queue page (pending, newest, 50 + counts)", "GET", "/api/violations", {}),
            (
                "filtered: category+subcategory+score range",
                "GET",
                "/api/violations",
                {"params": {"category": "fraud", "subcategory": "off_platform", "score_min": 0.8}},
            ),
            (
                "filtered: stream + time range, by score",
                "GET",
                "/api/violations",
                {
                    "params": {
                        "stream": "stream-0042",
                        "since": "2026-11-05T00:00:00+00:00",
                        "until": "2026-11-20T00:00:00+00:00",
                        "sort": "score",
                        "status": "",
                    }
                },
            ),
            (
                "all statuses, by severity",
                "GET",
                "/api/violations",
                {"params": {"status": "", "sort": "severity"}},
            ),
            ("deep page (page 1000)", "GET", "/api/violations", {"params": {"status": "", "page": 1000}}),
            ("item view", "GET", f"/api/violations/{pending[0]['id']}", {}),
            ("new-violation poll", "GET", "/api/poll", {}),
            ("console page", "GET", "/", {}),
        ]
        print(f"seeded {rows:,} violations in {seeded:.1f} s ({db.stat().st_size / 2**20:.0f} MB SQLite)")
        print(f"{'request':46s} {'median ms':>10s} {'p95 ms':>8s}")
        for name, method, url, kw in cases:
            ms = sorted(_time(client, method, url, repeat, **kw))
            print(f"{name:46s} {statistics.median(ms):10.1f} {ms[int(0.95 * (len(ms) - 1))]:8.1f}")
        decide = []
        for item in pending[:repeat]:
            t0 = time.perf_counter()
            r = client.post(
                f"/api/violations/{item['id']}/decision",
                json={"action": "confirm"},
                headers={"X-CSRF-Token": csrf},
            )
            decide.append((time.perf_counter() - t0) * 1000)
            assert r.status_code == 200
        decide.sort()
        print(
            f"{'decision (confirm + audit)':46s} {statistics.median(decide):10.1f} {decide[int(0.95 * (len(decide) - 1))]:8.1f}"
        )
    return 0
