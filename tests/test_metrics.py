"""The Prometheus endpoint: scraped over HTTP during and after short batch and live runs."""

from __future__ import annotations

import threading
import time
import urllib.request
from collections import Counter

import pytest
from conftest import CLIP, read_jsonl
from prometheus_client.parser import text_string_to_metric_families

from pipeline.config import LiveStream, load_config
from pipeline.live.replay import free_port
from pipeline.metrics import Metrics


def scrape(port: int) -> dict[tuple[str, tuple], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_metrics_endpoint_serves_livemod_metrics():
    m = Metrics(port=0, host="127.0.0.1")
    try:
        m.moderated(3, 12.5, ["fraud", "fraud", "vulgar"])
        m.batch_progress(12.5)
        m.backlog.labels("room1").set(4.0)
        m.queue.labels("windows_inflight").set(2)
        got = scrape(m.port)
    finally:
        m.close()
    assert got[("livemod_utterances_total", ())] == 3
    assert got[("livemod_audio_seconds_total", ())] == 12.5
    assert got[("livemod_violations_total", (("category", "fraud"),))] == 2
    assert got[("livemod_backlog_seconds", (("stream", "room1"),))] == 4.0
    assert got[("livemod_queue_depth", (("queue", "windows_inflight"),))] == 2
    assert got[("livemod_failures_total", (("kind", "segment"),))] == 0
    assert got[("livemod_utterances_per_second", ())] > 0
    assert 0 < got[("livemod_real_time_factor", ())] < 10


@pytest.mark.slow
def test_batch_run_metrics_match_its_records(tmp_path):
    from pipeline.batch import run_batch

    config = load_config(overrides=["ray.enabled=false", "clips.enabled=false"])
    m = Metrics(port=0, host="127.0.0.1")
    try:
        results, _, _ = run_batch([str(CLIP)], config, tmp_path, progress=False, metrics=m)
        got = scrape(m.port)  # after the run: the driver's numbers are final
    finally:
        m.close()
    (result,) = results
    violations = Counter(v["category"] for v in read_jsonl(tmp_path / "violations.jsonl"))
    assert violations
    for category, n in violations.items():
        assert got[("livemod_violations_total", (("category", category),))] == n
    assert got[("livemod_utterances_total", ())] == len(result.transcripts)
    assert 10 < got[("livemod_audio_seconds_total", ())] <= 15.3
    assert got[("livemod_streams_total", (("status", "done"),))] == 1
    assert 0 < got[("livemod_real_time_factor", ())] < 5


@pytest.mark.slow
def test_live_run_scraped_while_it_runs(tmp_path):
    """A file played in real time without Ray, scraped over HTTP while it plays."""
    from pipeline.runners.live_local import run_live_local

    port = free_port()
    config = load_config(overrides=["live.stdout=false", f"metrics.port={port}", "metrics.host=127.0.0.1"])
    seen: list[dict] = []
    stop = threading.Event()

    def poll() -> None:
        while not stop.is_set():
            try:
                got = scrape(port)
                if got.get(("livemod_utterances_total", ()), 0) > 0:
                    seen.append(got)
            except OSError:
                pass
            time.sleep(0.5)

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    summary = run_live_local([LiveStream(id="m1", url=str(CLIP))], config, tmp_path, duration=None)
    stop.set()
    poller.join()
    assert seen, "nothing scraped during the run"
    last = seen[-1]
    assert ("livemod_backlog_seconds", (("stream", "m1"),)) in last
    assert last[("livemod_stream_position_seconds", (("stream", "m1"),))] > 0
    assert ("livemod_queue_depth", (("queue", "m1"),)) in last
    assert last[("livemod_utterances_total", ())] <= summary["per_stream"]["m1"]["utterances"]
    assert last[("livemod_failures_total", (("kind", "lost"),))] == 0
    # the stream's row keeps how far it got once it has ended (it used to fall back to 0, and so
    # did the position gauge scraped between the end of the stream and the end of the run)
    import sqlite3

    with sqlite3.connect(tmp_path / "moderation.db") as db:
        (duration,) = db.execute("SELECT duration FROM streams WHERE stream_id = 'm1'").fetchone()
    assert 14.0 <= duration <= 15.5  # the clip is 15 s
