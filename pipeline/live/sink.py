"""Where live results go: JSONL, the moderation database, stdout and a webhook.

One LiveSink serves every stream of a process (under Ray: one sink actor), so the SQLite
database and the JSONL files have a single writer.  A violation's ``detected_at`` is taken
right before its durable write and ``latency`` is counted from the end of the utterance, so
the figure a moderator sees is the real delay from speech to record.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

from pipeline.config import Config
from pipeline.records import Transcript, Violation
from pipeline.sinks import Database, database_target, dumps

log = logging.getLogger(__name__)


def iso(wall: float) -> str:
    return datetime.fromtimestamp(wall, timezone.utc).isoformat(timespec="milliseconds")


class LiveSink:
    def __init__(self, out_dir: str | Path, config: Config, stdout=None) -> None:
        self.out = Path(out_dir)
        self.out.mkdir(parents=True, exist_ok=True)
        self.config = config
        self.db = Database(database_target(self.out, config.output.database))
        self._violations = open(self.out / "violations.jsonl", "a", encoding="utf-8")
        self._transcripts: dict[str, object] = {}
        self._lock = threading.Lock()
        self.stdout = (stdout or sys.stdout) if config.live.stdout else None
        self.webhook = None
        hook = config.live.webhook
        if hook.url:
            from pipeline.live.webhook import WebhookSink

            secret = os.environ.get(hook.secret_env)
            if not secret:
                log.warning("webhook %s: %s is not set, requests go unsigned", hook.url, hook.secret_env)
            self.webhook = WebhookSink(
                hook.url,
                secret,
                retries=hook.retries,
                timeout=hook.timeout_s,
                dead_letter=self.out / "webhook_failed.jsonl",
            )
        self.latencies: list[float] = []
        self.status: dict[str, dict] = {}
        self.metrics = None
        if config.metrics.port is not None:
            from pipeline.metrics import Metrics

            self.metrics = Metrics(config.metrics.port, config.metrics.host)

    def stream(
        self,
        stream_id: str,
        source: str,
        position: float,
        backlog: float,
        has_video: bool,
        asr_model: str = "",
        classifier_version: str = "",
        queued: int = 0,
    ) -> None:
        """Periodic progress of a stream: how far it got, how far behind it is, and how many
        utterances wait or are in ASR."""
        self.status[stream_id] = {"position": position, "backlog": backlog, "updated": time.time()}
        if self.metrics:
            self.metrics.backlog.labels(stream_id).set(backlog)
            self.metrics.position.labels(stream_id).set(position)
            self.metrics.queue.labels(stream_id).set(queued)
        with self._lock:
            self.db.upsert_stream(stream_id, source, position, has_video, asr_model, classifier_version)

    def results(
        self,
        transcripts: list[Transcript],
        violations: list[Violation],
        wall_of: dict[str, tuple[float, float]],
    ) -> list[Violation]:
        """Write one utterance's results.  ``wall_of`` maps utterance ids to the wall-clock
        (start, end) of their audio.  Returns the violations as written."""
        with self._lock:
            written = []
            for v in violations:
                start_wall, end_wall = wall_of[v.utterance_id]
                now = time.time()
                written.append(
                    replace(
                        v, wall_start=iso(start_wall), detected_at=iso(now), latency=max(0.0, now - end_wall)
                    )
                )
            self.db.add(transcripts, written)
            for t in transcripts:
                self._transcript_file(t.utterance.stream_id).write(dumps(t.to_dict()) + "\n")
            for v in written:
                self._violations.write(dumps(v.to_dict()) + "\n")
            self._violations.flush()
            for f in self._transcripts.values():
                f.flush()
            self.latencies += [v.latency for v in written]
            if self.metrics:
                audio = sum(t.utterance.duration for t in transcripts)
                self.metrics.moderated(len(transcripts), audio, [v.label.category for v in written])
        for v in written:
            if self.stdout:
                print(
                    f"{v.detected_at} {v.stream_id} {v.start:8.1f}s {v.label.code:34s} "
                    f"{v.label.score:.2f} {v.text}  (latency {v.latency:.1f}s)",
                    file=self.stdout,
                    flush=True,
                )
            if self.webhook:
                self.webhook.send(v.to_dict())
        return written

    def _transcript_file(self, stream_id: str):
        if stream_id not in self._transcripts:
            folder = self.out / "transcripts"
            folder.mkdir(exist_ok=True)
            self._transcripts[stream_id] = open(folder / f"{stream_id}.jsonl", "a", encoding="utf-8")
        return self._transcripts[stream_id]

    def clip_done(self, violation_ids: list[str], clip: str, clip_start: float) -> None:
        with self._lock:
            self.db.set_clip(violation_ids, clip, clip_start)

    def clip_failed(self, violation_ids: list[str], reason: str) -> None:
        log.warning("clip failed for %d violation(s): %s", len(violation_ids), reason)
        if self.metrics:
            self.metrics.failures.labels("clip").inc()
        with self._lock:
            self.db.set_clip(violation_ids, "")

    def gap(
        self, stream_id: str, start: float, end: float, start_wall: float, end_wall: float, reason: str
    ) -> None:
        log.warning("%s: no media from %.1fs to %.1fs (%s)", stream_id, start, end, reason)
        with self._lock:
            self.db.add_gap(stream_id, start, end, iso(start_wall), iso(end_wall), reason)

    def lost(self, stream_id: str, start: float, end: float, reason: str) -> None:
        log.error("%s: utterance %.1f–%.1fs not moderated: %s", stream_id, start, end, reason)
        if self.metrics:
            self.metrics.failures.labels("lost").inc()
        with self._lock:
            self.db.add_lost(stream_id, start, end, reason)
            self._violations.flush()

    def close(self) -> None:
        if self.metrics:
            self.metrics.close()
        if self.webhook:
            self.webhook.close(timeout=10)
        with self._lock:
            self._violations.close()
            for f in self._transcripts.values():
                f.close()
            self.db.close()

    def summary(self) -> dict:
        lat = sorted(self.latencies)

        def pct(p: float) -> float | None:
            return lat[min(len(lat) - 1, int(p * len(lat)))] if lat else None

        return {
            "violations": len(lat),
            "latency_p50": pct(0.5),
            "latency_p95": pct(0.95),
            "latency_max": lat[-1] if lat else None,
            "streams": dict(self.status),
            "webhook": getattr(self.webhook, "stats", None),
        }
