"""Prometheus metrics of batch and live runs (``--metrics-port`` or ``metrics.port``).

One process updates them from the results it receives: the batch driver, or the live sink (the
single writer every stream's results go through, kept on the driver's node).  Workers on other
nodes report nothing themselves, so the numbers are exactly what was written.

    livemod_utterances_total                       utterances transcribed
    livemod_utterances_per_second                  over the last minute
    livemod_audio_seconds_total                    seconds of media moderated (batch: whole windows
                                                   of stream time; live: utterance audio)
    livemod_real_time_factor                       batch: wall seconds per second of audio so far
                                                   (0.13 = 7.9× faster than real time)
    livemod_backlog_seconds{stream}                live: unmoderated speech behind real time
    livemod_stream_position_seconds{stream}        live: how far each stream got
    livemod_queue_depth{queue}                     batch: windows_inflight; live: <stream> utterances
                                                   waiting or in ASR
    livemod_violations_total{category}             violations written
    livemod_failures_total{kind}                   input | segment | lost (live) | clip
    livemod_streams_total{status}                  batch inputs: done | failed | skipped (resumed)
"""

from __future__ import annotations

import threading
import time
from collections import deque

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server


class Metrics:
    def __init__(self, port: int | None = None, host: str = "0.0.0.0") -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.utterances = Counter("livemod_utterances", "Utterances transcribed", registry=r)
        self.rate = Gauge("livemod_utterances_per_second", "Utterances per second, last minute", registry=r)
        self.audio = Counter("livemod_audio_seconds", "Seconds of media moderated", registry=r)
        self.rtf = Gauge("livemod_real_time_factor", "Wall seconds per second of audio (batch)", registry=r)
        self.backlog = Gauge(
            "livemod_backlog_seconds", "Seconds of speech not yet moderated", ["stream"], registry=r
        )
        self.position = Gauge(
            "livemod_stream_position_seconds", "Stream time reached", ["stream"], registry=r
        )
        self.queue = Gauge("livemod_queue_depth", "Work waiting or in flight", ["queue"], registry=r)
        self.violations = Counter("livemod_violations", "Violations written", ["category"], registry=r)
        self.failures = Counter("livemod_failures", "Work given up on", ["kind"], registry=r)
        self.streams = Counter("livemod_streams", "Batch inputs finished", ["status"], registry=r)
        for kind in ("input", "segment", "lost"):
            self.failures.labels(kind).inc(0)
        self._started = time.monotonic()
        self._audio_done = 0.0
        self._recent: deque[tuple[float, int]] = deque()
        self._lock = threading.Lock()
        self.server = None
        self.port = None
        if port is not None:
            self.server, _thread = start_http_server(port, addr=host, registry=r)
            self.port = self.server.server_port

    def moderated(self, utterances: int, audio_s: float, categories: list[str]) -> None:
        """Results of one window (batch) or one utterance batch (live) were written."""
        now = time.monotonic()
        with self._lock:
            self.utterances.inc(utterances)
            self.audio.inc(max(0.0, audio_s))
            for c in categories:
                self.violations.labels(c).inc()
            self._recent.append((now, utterances))
            while self._recent and now - self._recent[0][0] > 60.0:
                self._recent.popleft()
            span = max(1.0, min(60.0, now - self._started))
            self.rate.set(sum(n for _, n in self._recent) / span)

    def batch_progress(self, audio_s: float) -> None:
        """Batch: audio done so far (for the real-time factor)."""
        with self._lock:
            self._audio_done += max(0.0, audio_s)
            if self._audio_done > 0:
                self.rtf.set((time.monotonic() - self._started) / self._audio_done)

    def close(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None
