"""Live moderation in this process: a thread per stream, one shared moderation thread."""

from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path

from pipeline.config import Config, LiveStream
from pipeline.live.sink import LiveSink
from pipeline.live.worker import LocalModerator, StreamWorker

log = logging.getLogger(__name__)


class StopSignals:
    """SIGINT/SIGTERM stop the workers (which then flush what is in flight) instead of killing."""

    def __init__(self, stop) -> None:
        self.stop = stop
        self._previous: dict = {}

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        log.warning("signal %d: finishing what is in flight, then stopping", signum)
        self.stop()

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def run_live_local(streams: list[LiveStream], config: Config, out: Path, duration: float | None) -> dict:
    sink = LiveSink(out, config)
    moderator = LocalModerator(config)
    workers = [StreamWorker(s.id, s.url, config, moderator, sink, out) for s in streams]
    stats: dict[str, object] = {}

    def run(worker: StreamWorker) -> None:
        stats[worker.stream_id] = worker.run(duration)

    threads = [threading.Thread(target=run, args=(w,), name=f"live-{w.stream_id}") for w in workers]

    def stop_all() -> None:
        for w in workers:
            w.stop()

    with StopSignals(stop_all):
        for t in threads:
            t.start()
        for t in threads:
            while t.is_alive():
                t.join(timeout=0.5)
    moderator.close()
    summary = sink.summary()
    sink.close()
    summary["per_stream"] = {k: vars(v) for k, v in stats.items()}
    return summary
