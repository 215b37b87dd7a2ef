"""Replay a recording as a live source: ffmpeg publishing in real time to a listening worker.

Used by ``livemod bench live`` and the tests.  Like a real encoder, the publisher retries
while the listener is not up yet (a worker loads its models before it listens).
"""

from __future__ import annotations

import subprocess
import threading
import time
from pathlib import Path

from pipeline.media import find_ffmpeg


class Publisher:
    def __init__(self, media: str | Path, url: str) -> None:
        self.media, self.url = str(media), url
        self.proc: subprocess.Popen | None = None
        self.since = 0.0
        self.killed = False

    def start(self, delay: float = 0.0, patience: float = 120.0) -> Publisher:
        def go() -> None:
            time.sleep(delay)
            deadline = time.monotonic() + patience
            while not self.killed and time.monotonic() < deadline:
                self.since = time.monotonic()
                self.proc = subprocess.Popen(
                    [
                        find_ffmpeg(),
                        "-hide_banner",
                        "-loglevel",
                        "quiet",
                        "-nostdin",
                        "-re",
                        "-i",
                        self.media,
                        "-c",
                        "copy",
                        "-f",
                        "mpegts",
                        self.url,
                    ],
                    stdin=subprocess.DEVNULL,
                )
                if self.proc.wait() == 0 or self.killed or time.monotonic() - self.since > 2.0:
                    return
                time.sleep(0.3)

        threading.Thread(target=go, daemon=True, name=f"publish-{self.url}").start()
        return self

    def streamed_for(self) -> float:
        """Seconds the current connection has been publishing (0 when not connected)."""
        alive = self.proc is not None and self.proc.poll() is None
        return time.monotonic() - self.since if alive else 0.0

    def kill(self) -> None:
        self.killed = True
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
