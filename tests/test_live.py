"""Live moderation end to end: the demo stream pushed in real time over loopback TCP."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import pytest
from conftest import CLIP, STREAM, read_jsonl

from pipeline.config import LiveStream, load_config
from pipeline.live.replay import Publisher, free_port

pytestmark = pytest.mark.slow


@pytest.fixture
def pusher_factory():
    made: list[Publisher] = []

    def make(media: Path, port: int) -> Publisher:
        made.append(Publisher(media, f"tcp://127.0.0.1:{port}"))
        return made[-1]

    yield make
    for p in made:
        p.kill()


def test_demo_stream_live_over_tcp(tmp_path, pusher_factory, stream_truth, ray_session):
    """Violations arrive with the right category, stream time within ±2 s, and soon."""
    from pipeline.runners.ray_live import run_live_ray

    port = free_port()
    config = load_config(overrides=["live.stdout=false"])
    push = pusher_factory(STREAM, port)
    push.start(delay=2.0)  # the worker listens first, like an ingest endpoint
    summary = run_live_ray(
        [LiveStream(id="demo", url=f"tcp://127.0.0.1:{port}?listen=1")], config, tmp_path, duration=62.0
    )
    violations = read_jsonl(tmp_path / "violations.jsonl")
    expected = [u for u in stream_truth if u["labels"] and u["end"] < 58.0]
    assert len(expected) >= 4
    for u in expected:
        cats = {c.split(".")[0] for c in u["labels"]}
        hits = [v for v in violations if v["category"] in cats and abs(v["start"] - u["start"]) <= 2.0]
        assert hits, (u["text"], [(v["start"], v["category"]) for v in violations])
        for v in hits:
            assert 0 <= v["latency"] < 10.0
            assert v["detected_at"] > v["wall_start"]
    assert summary["per_stream"]["demo"]["lost"] == 0
    with sqlite3.connect(tmp_path / "moderation.db") as db:
        assert db.execute("SELECT COUNT(*) FROM violations WHERE stream_id='demo'").fetchone()[0] == len(
            violations
        )
        clips = [r[0] for r in db.execute("SELECT clip FROM violations")]
    assert all(c and (tmp_path / c).is_file() for c in clips)


def test_source_cut_and_restarted(tmp_path, pusher_factory):
    """The worker reconnects, records the gap, and keeps detecting after it (no Ray)."""
    from pipeline.runners.live_local import run_live_local

    port = free_port()
    config = load_config(overrides=["live.stdout=false", "live.stall_timeout_s=3"])
    first = pusher_factory(CLIP, port)
    second = pusher_factory(CLIP, port)
    first.start()

    def cut_and_restart():
        while first.streamed_for() < 7.0:  # cut mid-stream, 7 s in
            time.sleep(0.1)
        first.kill()
        second.start(delay=3.0)  # back after about 3 s, from the top of the clip

    threading.Thread(target=cut_and_restart, daemon=True).start()
    run_live_local(
        [LiveStream(id="cut", url=f"tcp://127.0.0.1:{port}?listen=1")], config, tmp_path, duration=24.0
    )
    with sqlite3.connect(tmp_path / "moderation.db") as db:
        gaps = db.execute("SELECT start_s, end_s, reason FROM gaps WHERE stream_id='cut'").fetchall()
    assert len(gaps) == 1
    start, end, _ = gaps[0]
    assert 5.0 < start < 9.0 and 1.5 < end - start < 6.0
    violations = read_jsonl(tmp_path / "violations.jsonl")
    after = [v for v in violations if v["start"] > end]
    assert "efficacy_claim" in {v["subcategory"] for v in after}  # 包治百病 again, after the gap
    with sqlite3.connect(tmp_path / "moderation.db") as db:
        clips = [r[0] for r in db.execute("SELECT clip FROM violations")]
    assert clips and all(c and (tmp_path / c).is_file() for c in clips)  # trimmed at the outage
