"""Live building blocks with real ffmpeg and real loopback sockets: a file played in real time,
a TCP push source that drops and comes back, the segment ring and its clips, the webhook sink."""

from __future__ import annotations

import json
import socket
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from pipeline.live import LiveSource, ReconnectPolicy, SegmentRing, WebhookSink, verify_signature
from pipeline.media import MediaError, decode_audio, probe
from pipeline.records import SAMPLE_RATE

TONE = (1.5, 2.5)  # seconds of the test media that carry a loud tone; the rest is near silence


def make_media(ffmpeg_exe: str, dst: Path, seconds: float, *fmt: str) -> Path:
    """Test-pattern video (a keyframe every second) and a tone heard only inside TONE."""
    a, b = TONE
    subprocess.run(
        [
            ffmpeg_exe, "-y", "-hide_banner", "-loglevel", "error",
            "-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=44100:duration={seconds}",
            "-f", "lavfi", "-i", f"testsrc=size=160x120:rate=10:duration={seconds}",
            "-af", f"volume=0.01:enable='not(between(t,{a},{b}))'",
            "-c:v", "libx264", "-preset", "ultrafast", "-g", "10", "-pix_fmt", "yuv420p",
            "-c:a", "aac", "-shortest", *fmt, str(dst),
        ],
        check=True,
        timeout=60,
    )  # fmt: skip
    return dst


def loud(audio: np.ndarray, start: float, end: float) -> float:
    """RMS of the audio between two times (seconds from its first sample)."""
    piece = audio[int(start * SAMPLE_RATE) : int(end * SAMPLE_RATE)]
    return float(np.sqrt(np.mean(piece**2))) if len(piece) else 0.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def processes():
    """Processes a test starts; killed whatever happens to the test."""
    started: list[subprocess.Popen] = []
    yield started
    for p in started:
        if p.poll() is None:
            p.kill()
        p.wait(timeout=5)


@pytest.fixture
def sources():
    """LiveSources a test starts; stopped whatever happens to the test."""
    started: list[LiveSource] = []
    yield started
    for s in started:
        s.stop()


def consume(source: LiveSource, blocks: list, errors: list) -> threading.Thread:
    def run() -> None:
        try:
            blocks.extend(source.blocks())
        except Exception as exc:  # reported by the test
            errors.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def audio_seconds(blocks: list) -> float:
    return sum(b.duration for b in blocks)


# -- a local file played in real time, and the ring --


def test_file_source_is_paced_in_real_time_and_the_ring_cuts_exact_clips(tmp_path: Path, ffmpeg_exe):
    media = make_media(ffmpeg_exe, tmp_path / "live.mp4", 4.0)
    ring = SegmentRing(tmp_path / "ring", keep_seconds=60)
    source = LiveSource(str(media), "file-1", ring=ring, block_seconds=0.5)
    t0 = time.monotonic()
    blocks = list(source.blocks())
    elapsed = time.monotonic() - t0

    audio = np.concatenate([b.samples for b in blocks])
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert abs(len(audio) / SAMPLE_RATE - 4.0) < 0.05
    assert all(len(b.samples) == SAMPLE_RATE // 2 for b in blocks[:-1])
    for prev, block in zip(blocks, blocks[1:]):
        assert block.stream_time == pytest.approx(prev.end_time)  # contiguous, increasing
        assert block.wall_time >= prev.wall_time
    assert blocks[0].stream_time == 0.0 and not source.gaps
    # real-time pacing (ffmpeg's -re allows an initial burst of 0.5 s)
    assert elapsed > 3.0
    span_wall = blocks[-1].wall_time - blocks[0].wall_time
    span_stream = blocks[-1].stream_time - blocks[0].stream_time
    assert abs(span_wall - span_stream) < 0.6
    # the tone is where the media has it: stream time is media time
    assert loud(audio, 1.6, 2.4) > 20 * max(loud(audio, 0.2, 1.4), loud(audio, 2.6, 3.8))

    assert len(ring.segments) >= 2
    (held,) = ring.spans()
    assert held[0] == pytest.approx(0.0, abs=0.05) and held[1] == pytest.approx(4.0, abs=0.1)
    clip = ring.clip(1.0, 3.0, tmp_path / "clips" / "v.mp4", video=True)
    info = probe(clip)
    assert info.has_video and info.has_audio and abs(info.duration - 2.0) < 0.15
    sound = decode_audio(str(clip))
    assert loud(sound, 0.6, 1.4) > 20 * max(loud(sound, 0.1, 0.4), loud(sound, 1.6, 1.9))
    audio_only = ring.clip(0.5, 1.7, tmp_path / "clips" / "a.m4a", video=False)
    assert not probe(audio_only).has_video and abs(probe(audio_only).duration - 1.2) < 0.15

    with pytest.raises(MediaError, match="no longer in the ring"):
        ring.clip(-10.0, -5.0, tmp_path / "x.mp4", video=True)
    with pytest.raises(MediaError, match="not in the ring yet"):
        ring.clip(3.5, 9.0, tmp_path / "x.mp4", video=True)
    assert not list((tmp_path / "ring").glob("*.ffconcat"))


def test_stop_ends_a_looping_source_promptly_and_the_ring_prunes(tmp_path: Path, ffmpeg_exe):
    media = make_media(ffmpeg_exe, tmp_path / "one.mp4", 1.0)
    ring = SegmentRing(tmp_path / "ring", keep_seconds=1.0, segment_time=1.0)
    source = LiveSource(str(media), "loop-1", ring=ring, loop=True, block_seconds=0.25)
    timer = threading.Timer(3.5, source.stop)
    timer.start()
    t0 = time.monotonic()
    try:
        blocks = list(source.blocks())
    finally:
        timer.cancel()
    assert time.monotonic() - t0 < 4.5  # finished within a second of stop()
    assert source._run is None  # ffmpeg is gone
    assert audio_seconds(blocks) > 2.5  # the 1 s file was replayed
    for prev, block in zip(blocks, blocks[1:]):
        assert block.stream_time == pytest.approx(prev.end_time)
    assert not source.gaps
    assert ring.segments and ring.segments[0].start > 0.5  # the oldest were deleted
    assert len(list((tmp_path / "ring").glob("seg*.ts"))) <= 4


def test_ring_reencodes_audio_that_mpegts_cannot_carry(tmp_path: Path, ffmpeg_exe):
    wav = make_media(ffmpeg_exe, tmp_path / "pcm.wav", 4.0, "-vn", "-c:a", "pcm_s16le")
    copied = SegmentRing(tmp_path / "copied")
    list(LiveSource(str(wav), "pcm-copy", ring=copied, realtime_file=False, ring_audio="copy").blocks())
    with pytest.raises(MediaError, match="no audio stream"):  # stream copy silently stores PCM as data
        probe(copied.segments[0].path)

    ring = SegmentRing(tmp_path / "ring")
    t0 = time.monotonic()
    blocks = list(LiveSource(str(wav), "pcm-1", ring=ring, realtime_file=False).blocks())
    assert time.monotonic() - t0 < 3.0  # not paced
    assert abs(audio_seconds(blocks) - 4.0) < 0.05
    assert probe(ring.segments[0].path).audio_codec == "aac"
    clip = ring.clip(1.0, 3.0, tmp_path / "a.m4a", video=False)
    sound = decode_audio(str(clip))
    assert abs(len(sound) / SAMPLE_RATE - 2.0) < 0.15
    assert loud(sound, 0.6, 1.4) > 20 * max(loud(sound, 0.1, 0.4), loud(sound, 1.6, 1.9))


# -- network sources --


def start_sender(
    ffmpeg_exe: str, media: Path, port: int, processes: list, within: float = 5.0
) -> subprocess.Popen:
    """Push ``media`` in real time to a listener on ``port``, retrying until it accepts.

    Like a camera, not like ``-re`` alone, which sends its first 0.5 s at once and then stays
    0.5 s ahead of the clock (an initial burst of 0 means the default; 0.001 turns it off).
    """
    deadline = time.monotonic() + within
    while True:
        p = subprocess.Popen(
            [ffmpeg_exe, "-nostdin", "-loglevel", "error", "-re", "-readrate_initial_burst", "0.001",
             "-i", str(media), "-c", "copy", "-f", "mpegts", f"tcp://127.0.0.1:{port}"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        processes.append(p)
        try:
            p.wait(timeout=0.3)  # refused: it exits at once
        except subprocess.TimeoutExpired:
            return p
        if time.monotonic() > deadline:
            raise AssertionError("the listener never accepted the sender")
        time.sleep(0.1)


def wait_for(condition, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_tcp_push_source_survives_an_outage_with_one_gap(tmp_path: Path, ffmpeg_exe, processes, sources):
    media = make_media(ffmpeg_exe, tmp_path / "feed.ts", 10.0, "-f", "mpegts")
    port = free_port()
    ring = SegmentRing(tmp_path / "ring", keep_seconds=60)
    seen: list = []
    source = LiveSource(
        f"tcp://127.0.0.1:{port}?listen=1",
        "tcp-1",
        ring=ring,
        block_seconds=0.25,
        stall_timeout=3.0,
        reconnect=ReconnectPolicy(initial=0.2, factor=2.0, max_delay=1.0, give_up_after=10.0),
        on_gap=seen.append,
    )
    sources.append(source)
    blocks: list = []
    errors: list = []
    consumer = consume(source, blocks, errors)

    sender = start_sender(ffmpeg_exe, media, port, processes)
    assert wait_for(lambda: audio_seconds(blocks) >= 1.5, 6.0), "no audio from the first connection"
    sender.kill()
    killed = time.time()
    time.sleep(1.5)
    start_sender(ffmpeg_exe, media, port, processes)
    assert wait_for(lambda: source.gaps and audio_seconds(blocks) >= 3.0, 6.0), "no audio after the outage"
    assert wait_for(lambda: blocks[-1].end_time > source.gaps[0].end_stream_time + 1.0, 4.0)
    source.stop()
    consumer.join(timeout=5)
    assert not consumer.is_alive() and not errors

    assert len(source.gaps) == 1 and seen == source.gaps
    gap = source.gaps[0]
    outage = gap.end_wall - gap.start_wall
    assert 1.2 < gap.duration < 2.6 and gap.duration == pytest.approx(outage)
    assert gap.start_wall <= killed + 0.5 and gap.reason
    after = [i for i, b in enumerate(blocks) if b.gap is not None]
    assert len(after) == 1 and blocks[after[0]].gap is gap
    first_after = blocks[after[0]]
    assert first_after.stream_time == pytest.approx(gap.end_stream_time)
    assert blocks[after[0] - 1].end_time == pytest.approx(gap.start_stream_time)
    for prev, block in zip(blocks, blocks[1:]):
        if block.gap is None:
            assert block.stream_time == pytest.approx(prev.end_time)
    # stream time keeps mapping to wall time across the outage: from the last block before it to
    # the last one after, both clocks advance alike (the reconnection's initial burst is taken out)
    before, last = blocks[after[0] - 1], blocks[-1]
    assert abs((last.wall_time - before.wall_time) - (last.end_time - before.end_time)) < 0.6

    spans = ring.spans()
    assert len(spans) == 2, spans
    assert spans[1][0] == pytest.approx(gap.end_stream_time, abs=0.1)
    with pytest.raises(MediaError, match="outage"):
        ring.clip(gap.start_stream_time - 0.5, gap.end_stream_time + 0.5, tmp_path / "x.mp4", video=True)


class Relay:
    """Passes a sender's bytes (it connects to ``inlet``) to the latest reader (connected to
    ``outlet``); while ``frozen`` is set they are dropped, as by a source that hangs without
    closing its connection."""

    def __init__(self) -> None:
        self.frozen = threading.Event()
        self.reader: socket.socket | None = None
        self.sockets: list[socket.socket] = []
        self.inlet = self._listen(self._pump)
        self.outlet = self._listen(self._readers)

    def _listen(self, target) -> int:
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        s.listen(8)
        self.sockets.append(s)
        threading.Thread(target=target, args=(s,), daemon=True).start()
        return s.getsockname()[1]

    def _readers(self, server: socket.socket) -> None:
        try:
            while True:
                conn = server.accept()[0]
                self.sockets.append(conn)
                self.reader = conn
        except OSError:
            pass

    def _pump(self, server: socket.socket) -> None:
        try:
            sender = server.accept()[0]
            self.sockets.append(sender)
            while data := sender.recv(65536):
                reader = self.reader
                if reader is not None and not self.frozen.is_set():
                    try:
                        reader.sendall(data)
                    except OSError:
                        self.reader = None
        except OSError:
            pass

    def close(self) -> None:
        for s in self.sockets:
            s.close()


def test_source_that_hangs_is_noticed_and_redialled(tmp_path: Path, ffmpeg_exe, processes, sources):
    media = make_media(ffmpeg_exe, tmp_path / "feed.ts", 10.0, "-f", "mpegts")
    relay = Relay()
    try:
        start_sender(ffmpeg_exe, media, relay.inlet, processes)
        source = LiveSource(
            f"tcp://127.0.0.1:{relay.outlet}",
            "hang-1",
            block_seconds=0.25,
            stall_timeout=1.0,
            reconnect=ReconnectPolicy(initial=0.2, factor=1.0, give_up_after=8.0),
        )
        sources.append(source)
        blocks: list = []
        errors: list = []
        consumer = consume(source, blocks, errors)
        assert wait_for(lambda: audio_seconds(blocks) >= 1.0, 5.0), "no audio before the hang"
        relay.frozen.set()
        time.sleep(2.0)
        relay.frozen.clear()
        assert wait_for(
            lambda: source.gaps and blocks[-1].end_time > source.gaps[0].end_stream_time + 1.0, 6.0
        )
        source.stop()
        consumer.join(timeout=5)
        assert not consumer.is_alive() and not errors
    finally:
        relay.close()
    (gap,) = source.gaps
    assert "timed out" in gap.reason or "stalled" in gap.reason
    assert 1.5 < gap.duration < 3.0  # the relay held the feed back for 2.0 s
    after = [b for b in blocks if b.gap is not None]
    assert len(after) == 1 and after[0].stream_time == pytest.approx(gap.end_stream_time)


def test_unreachable_source_gives_up_with_the_reason(sources):
    port = free_port()
    source = LiveSource(
        f"tcp://127.0.0.1:{port}", "dead-1", reconnect=ReconnectPolicy(initial=0.1, give_up_after=1.0)
    )
    sources.append(source)
    t0 = time.monotonic()
    with pytest.raises(MediaError, match="giving up.*refused"):
        list(source.blocks())
    assert time.monotonic() - t0 < 3.0
    assert not source.gaps  # nothing was ever received, so there is no stream time to have a hole in


def test_silent_source_is_noticed_as_stalled(sources):
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    held: list[socket.socket] = []

    def accept() -> None:
        try:
            while True:
                held.append(server.accept()[0])  # accept and never send a byte
        except OSError:
            pass

    threading.Thread(target=accept, daemon=True).start()
    port = server.getsockname()[1]
    source = LiveSource(
        f"tcp://127.0.0.1:{port}",
        "silent-1",
        stall_timeout=0.8,
        probe_seconds=0.5,
        reconnect=ReconnectPolicy(initial=0.1, give_up_after=2.5),
    )
    sources.append(source)
    t0 = time.monotonic()
    try:
        with pytest.raises(MediaError, match="giving up.*(timed out|stalled)"):
            list(source.blocks())
    finally:
        server.close()
        for c in held:
            c.close()
    assert time.monotonic() - t0 < 5.0


# -- webhook --


class Endpoint:
    """A local HTTP endpoint that answers from a plan, then with ``default``, and records everything."""

    def __init__(self, plan: list[tuple[int, dict]], default: int = 200) -> None:
        self.plan = list(plan)
        self.default = default
        self.requests: list[dict] = []
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                status, headers = endpoint.plan.pop(0) if endpoint.plan else (endpoint.default, {})
                endpoint.requests.append(
                    {"time": time.monotonic(), "headers": dict(self.headers), "body": body, "status": status}
                )
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def endpoint():
    made: list[Endpoint] = []

    def make(plan: list[tuple[int, dict]], default: int = 200) -> Endpoint:
        made.append(Endpoint(plan, default))
        return made[-1]

    yield make
    for e in made:
        e.close()


RECORD = {"id": "77eb8e0cc3715da6", "category": "fraud", "text": "加我微信私聊,不走平台", "start": 103.21}


def test_webhook_retries_5xx_then_delivers_once_signed(tmp_path: Path, endpoint):
    server = endpoint([(503, {"Retry-After": "1"}), (503, {})])
    dead = tmp_path / "dead.jsonl"
    sink = WebhookSink(server.url, "s3cret", backoff=0.05, retries=5, dead_letter=dead)
    t0 = time.perf_counter()
    assert sink.send(RECORD)
    assert time.perf_counter() - t0 < 0.05
    stats = sink.close(timeout=10)
    assert (stats.sent, stats.retried, stats.failed, stats.dropped, stats.pending) == (1, 2, 0, 0, 0)

    assert [r["status"] for r in server.requests] == [503, 503, 200]
    accepted = server.requests[-1]
    body, headers = accepted["body"], accepted["headers"]
    assert json.loads(body.decode("utf-8")) == RECORD
    assert "加我微信".encode() in body  # ensure_ascii=False: Chinese stays readable
    assert headers["Content-Type"].startswith("application/json")
    ts, sig = headers["X-Livemod-Timestamp"], headers["X-Livemod-Signature"]
    assert sig.startswith("sha256=") and verify_signature("s3cret", ts, body, sig)
    assert not verify_signature("wrong", ts, body, sig)
    assert not verify_signature("s3cret", ts, body.replace(b"103.21", b"1.0"), sig)
    assert not verify_signature("s3cret", ts, body, sig, now=int(ts) + 3600)  # a replay
    assert len({r["headers"]["X-Livemod-Delivery"] for r in server.requests}) == 1
    # Retry-After: 1 was honoured, the next retry used the short backoff
    assert server.requests[1]["time"] - server.requests[0]["time"] >= 0.9
    assert server.requests[2]["time"] - server.requests[1]["time"] < 0.5
    assert not dead.exists()


def test_webhook_dead_letters_what_it_cannot_deliver(tmp_path: Path, endpoint):
    dead = tmp_path / "dead.jsonl"
    failing = endpoint([], default=500)
    sink = WebhookSink(failing.url, "s3cret", retries=2, backoff=0.01, dead_letter=dead)
    sink.send(RECORD)
    stats = sink.close(timeout=10)
    assert (stats.sent, stats.retried, stats.failed) == (0, 2, 1)
    assert len(failing.requests) == 3
    refusing = endpoint([], default=400)  # a client error is not retried
    sink = WebhookSink(refusing.url, None, retries=5, backoff=0.01, dead_letter=dead)
    sink.send({**RECORD, "id": "second"})
    stats = sink.close(timeout=10)
    assert (stats.retried, stats.failed) == (0, 1) and len(refusing.requests) == 1
    assert "X-Livemod-Signature" not in refusing.requests[0]["headers"]  # no secret: unsigned

    lines = [json.loads(x) for x in dead.read_text(encoding="utf-8").splitlines()]
    assert [x["record"] for x in lines] == [RECORD, {**RECORD, "id": "second"}]
    assert "500" in lines[0]["error"] and lines[0]["attempts"] == 3
    assert "400" in lines[1]["error"] and lines[1]["attempts"] == 1


def test_webhook_send_never_blocks_and_never_loses_silently(tmp_path: Path):
    dead = tmp_path / "dead.jsonl"
    url = f"http://127.0.0.1:{free_port()}/hook"  # nothing listens
    sink = WebhookSink(url, "s3cret", max_queue=2, retries=3, backoff=10.0, dead_letter=dead)
    times = []
    for i in range(6):
        t0 = time.perf_counter()
        sink.send({**RECORD, "id": f"r{i}"})
        times.append(time.perf_counter() - t0)
    assert max(times) < 0.05
    assert sink.stats.dropped >= 3  # two queued, at most one in flight
    t0 = time.monotonic()
    stats = sink.close(timeout=0.5)
    assert time.monotonic() - t0 < 2.0
    assert stats.sent == 0 and stats.failed + stats.dropped == 6 and stats.pending == 0
    lines = [json.loads(x) for x in dead.read_text(encoding="utf-8").splitlines()]
    assert sorted(x["record"]["id"] for x in lines) == [f"r{i}" for i in range(6)]
    assert any("queue full" in x["error"] for x in lines)
    assert any("refused" in x["error"].lower() for x in lines)
