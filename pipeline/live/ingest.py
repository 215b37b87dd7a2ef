"""Continuous decoding of one live source, through outages.

:class:`LiveSource` keeps one ffmpeg process reading the source (RTMP, HTTP-FLV, HLS, RTSP, SRT,
TCP, UDP, or a local file played at real-time speed for tests) and yields 16 kHz mono audio in
short blocks, each stamped with its *stream time*: seconds since the first audio of the first
connection.  When the source dies or stalls, ffmpeg is restarted with exponential backoff, and
stream time jumps by the real length of the outage, so a stream time always maps to the wall
clock and the hole is recorded as a :class:`Gap` instead of silently closing up.

The same ffmpeg process can also copy the source into a :class:`~pipeline.live.ring.SegmentRing`,
so clips of recent violations can be cut without reading the source twice.
"""

from __future__ import annotations

import functools
import logging
import os
import queue
import random
import re
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlsplit

import numpy as np

from pipeline.live.ring import SegmentRing
from pipeline.media import MediaError, find_ffmpeg
from pipeline.records import SAMPLE_RATE

log = logging.getLogger(__name__)

_TICK = 0.1  # seconds between checks for stop, stall and give-up while waiting for data
_SETTLE = 0.25  # seconds of a reconnection's first data used to measure its initial burst
_EOF = object()
_ERROR_LINE = re.compile(r"error|failed|refused|timed out|invalid|not found|denied|unreachable", re.I)


@dataclass(frozen=True)
class ReconnectPolicy:
    """How long to wait before each reconnect attempt of one outage, and when to give up.

    The n-th attempt (from 0) waits ``min(max_delay, initial * factor**n)``, scaled by a random
    factor in ``[1 - jitter, 1 + jitter]`` (jitter is off by default so tests are exact).
    ``give_up_after``: seconds without data after which the source is abandoned (None: never).
    """

    initial: float = 0.5
    factor: float = 2.0
    max_delay: float = 10.0
    give_up_after: float | None = None
    jitter: float = 0.0

    def delay(self, attempt: int) -> float:
        d = min(self.max_delay, self.initial * self.factor**attempt)
        if self.jitter:
            d *= 1.0 + random.uniform(-self.jitter, self.jitter)
        return max(0.0, d)


@dataclass(frozen=True)
class Gap:
    """A stretch of a live stream with no media: the source was down or stalled."""

    stream_id: str
    start_stream_time: float
    end_stream_time: float
    start_wall: float
    end_wall: float
    reason: str  # ffmpeg's last complaint, "stalled: …", or "source ended"

    @property
    def duration(self) -> float:
        return self.end_stream_time - self.start_stream_time

    def to_dict(self) -> dict:
        return {
            "stream_id": self.stream_id,
            "start": round(self.start_stream_time, 3),
            "end": round(self.end_stream_time, 3),
            "start_wall": round(self.start_wall, 3),
            "end_wall": round(self.end_wall, 3),
            "reason": self.reason,
        }


@dataclass(frozen=True)
class AudioBlock:
    """A block of decoded audio and where it sits in the stream.

    ``wall_time`` is the clock time at which the block's last bytes arrived.  ``gap`` is set on
    the first block after an outage: ``stream_time`` has jumped over it, and a consumer that
    keeps state across blocks (VAD) should flush it there.
    """

    stream_time: float
    wall_time: float
    samples: np.ndarray = field(repr=False)  # float32, 16 kHz mono
    gap: Gap | None = None

    @property
    def duration(self) -> float:
        return len(self.samples) / SAMPLE_RATE

    @property
    def end_time(self) -> float:
        return self.stream_time + self.duration


def is_local(url: str) -> bool:
    """A path (or file: URL) rather than a network source."""
    return "://" not in url or url.startswith("file:")


def is_listener(url: str, input_options: Sequence[str] = ()) -> bool:
    """Whether ffmpeg waits for the source to connect to it (push ingest) rather than dialling out."""
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    if query.get("listen", ["0"])[0] not in ("0", "") or query.get("mode", [""])[0] == "listener":
        return True
    if parts.scheme in ("udp", "rtp", "udplite"):
        return True  # datagrams arrive when the sender sends; there is no connection to lose
    opts = list(input_options)
    return "-listen" in opts and opts[opts.index("-listen") + 1 : opts.index("-listen") + 2] != ["0"]


def network_options(
    url: str, timeout: float, *, listener: bool = False, ffmpeg_exe: str | None = None
) -> list[str]:
    """ffmpeg input options that make a silent network source fail within ``timeout`` seconds.

    None for a listener (they would also end the wait for the publisher), none for protocols
    without such an option; :class:`LiveSource`'s stall watchdog notices the silence anyway,
    these only get ffmpeg's own account of it.
    """
    if listener:
        return []
    scheme = urlsplit(url).scheme.lower()
    us = str(int(timeout * 1_000_000))
    if scheme in ("http", "https", "tcp", "tls", "rtmp", "rtmps", "rtmpt", "rtmpe", "rtmpte", "rtmpts"):
        return ["-rw_timeout", us]
    if scheme == "srt":
        return ["-timeout", us]
    if scheme in ("rtsp", "rtsps"):
        # before ffmpeg 5, rtsp's -timeout meant "listen, for this many seconds"
        major = ffmpeg_major(ffmpeg_exe or find_ffmpeg())
        return ["-timeout", us] if major is None or major >= 5 else ["-stimeout", us]
    return []


@functools.cache
def ffmpeg_major(exe: str) -> int | None:
    """ffmpeg's major version, or None for a git build (``N-…``) or when it cannot be told."""
    try:
        out = subprocess.run([exe, "-version"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    m = re.match(r"ffmpeg version n?(\d+)\.", out)
    return int(m[1]) if m else None


class _Run:
    """One ffmpeg process: stdout read into a queue by a thread, stderr's tail kept by another."""

    def __init__(self, args: list[str], clock: Callable[[], float]) -> None:
        self.args = args
        self.clock = clock
        self.chunks: queue.Queue = queue.Queue()
        self.stderr: deque[str] = deque(maxlen=40)
        self.started = time.monotonic()
        self._signalled = threading.Lock()  # taken by the one SIGTERM sent
        self.proc = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,  # a Ctrl-C goes to us, and we stop ffmpeg cleanly
        )
        self._out = threading.Thread(target=self._read_stdout, daemon=True, name="live-stdout")
        self._err = threading.Thread(target=self._read_stderr, daemon=True, name="live-stderr")
        self._out.start()
        self._err.start()

    def _read_stdout(self) -> None:
        fd = self.proc.stdout.fileno()
        try:
            while True:
                try:
                    data = os.read(fd, 65536)
                except OSError:
                    break
                if not data:
                    break
                self.chunks.put((data, self.clock(), time.monotonic()))
        finally:
            self.chunks.put(_EOF)

    def _read_stderr(self) -> None:
        for line in iter(self.proc.stderr.readline, b""):
            text = line.decode("utf-8", "replace").strip()
            if text:
                self.stderr.append(text[:300])

    def reason(self) -> str:
        """ffmpeg's last complaint (its last error line, else its last line), without the
        ``[component @ 0x…]`` prefix."""
        self._err.join(timeout=1.0)
        lines = [re.sub(r"^\[[^\]]+\]\s*", "", ln) for ln in self.stderr]
        lines = [ln for ln in lines if ln and not ln.startswith("Last message repeated")]
        errors = [ln for ln in lines if _ERROR_LINE.search(ln)]
        if errors or lines:
            return re.sub(r"^Error opening (input|output) files?: ", "", (errors or lines)[-1])
        code = self.proc.returncode
        return "source ended" if code == 0 else f"ffmpeg exited with code {code}"

    def request_stop(self) -> None:
        """Send ffmpeg one SIGTERM, never two: a second one makes ffmpeg abort its output I/O,
        and the ring's current segment and its list entry would be lost.  Signal-handler safe."""
        if self._signalled.acquire(blocking=False) and self.proc.poll() is None:
            try:
                self.proc.terminate()
            except OSError:  # pragma: no cover - it exited meanwhile
                pass

    def terminate(self) -> None:
        """Ask ffmpeg to finish (it closes its outputs), and kill it if it does not."""
        if self.proc.poll() is None:
            self.request_stop()
            try:
                self.proc.wait(timeout=2)
            except subprocess.TimeoutExpired:
                log.warning("ffmpeg did not stop within 2 s of SIGTERM; killing it")
                self.proc.kill()
                self.proc.wait()
        self._out.join(timeout=2)
        self._err.join(timeout=2)
        for pipe in (self.proc.stdout, self.proc.stderr):
            if pipe:
                pipe.close()


class LiveSource:
    """Decode one live source continuously into :class:`AudioBlock`s (see the module docstring).

    ``url``: anything ffmpeg reads; a local path is played at real-time speed unless
    ``realtime_file`` is False.  ``stall_timeout``: seconds without data after which a source
    that was delivering is considered dead.  ``connect_timeout``: seconds a (re)connection may
    take to deliver its first audio (connecting, handshakes, waiting for a keyframe, probing;
    default ``2 * stall_timeout + probe_seconds``); a listener waits for its publisher without
    limit (but ``give_up_after`` still applies).  ``probe_seconds``: how much of a network
    source ffmpeg may read to identify its streams before decoding (ffmpeg's default of 5 s
    would delay every connect by as much).
    ``loop``: replay a local file forever.  ``on_gap`` is called with each :class:`Gap` once the
    source is back (or given up, or stopped during the outage).  ``input_options`` go before
    ``-i`` (e.g. ``["-rtsp_transport", "tcp"]``).  ``ring_audio``/``ring_video``: see
    :meth:`SegmentRing.output_args`.
    """

    def __init__(
        self,
        url: str,
        stream_id: str,
        *,
        block_seconds: float = 0.5,
        ring: SegmentRing | None = None,
        realtime_file: bool | None = None,
        reconnect: ReconnectPolicy | None = None,
        stall_timeout: float = 5.0,
        connect_timeout: float | None = None,
        probe_seconds: float = 1.0,
        loop: bool = False,
        on_gap: Callable[[Gap], None] | None = None,
        input_options: Sequence[str] = (),
        ring_audio: str = "aac",
        ring_video: str = "copy",
        ffmpeg_exe: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if block_seconds <= 0 or stall_timeout <= 0:
            raise ValueError("block_seconds and stall_timeout must be positive")
        self.url = url
        self.stream_id = stream_id
        self.block_seconds = block_seconds
        self.ring = ring
        self.local = is_local(url)
        self.realtime_file = self.local if realtime_file is None else realtime_file
        self.reconnect = reconnect or ReconnectPolicy()
        self.stall_timeout = stall_timeout
        self.connect_timeout = (
            2 * stall_timeout + probe_seconds if connect_timeout is None else connect_timeout
        )
        self.probe_seconds = probe_seconds
        self.loop = loop
        self.on_gap = on_gap
        self.input_options = list(input_options)
        self.listener = is_listener(url, input_options)
        self.ring_audio = ring_audio
        self.ring_video = ring_video
        self.ffmpeg_exe = ffmpeg_exe
        self.clock = clock
        self.gaps: list[Gap] = []
        self.stream_time = 0.0  # stream time of the next sample
        self._stop = threading.Event()
        self._run: _Run | None = None
        self._used = False

    # -- control --

    def stop(self) -> None:
        """Make :meth:`blocks` finish promptly; safe from another thread or a signal handler."""
        self._stop.set()
        run = self._run
        if run is not None:
            run.request_stop()

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    def command(self, segment_index: int | None = None) -> list[str]:
        """The ffmpeg command line of one run (with the ring's output when ``segment_index`` is given)."""
        exe = self.ffmpeg_exe or find_ffmpeg()
        args = [exe, "-nostdin", "-loglevel", "error"]
        if self.local:
            if self.realtime_file:
                args.append("-re")
            if self.loop:
                args += ["-stream_loop", "-1"]
        else:
            args += network_options(self.url, self.stall_timeout, listener=self.listener, ffmpeg_exe=exe)
            args += ["-analyzeduration", str(int(self.probe_seconds * 1_000_000))]
        args += [*self.input_options, "-i", self.url]
        # first_pts=0 pads a late-starting audio track so audio time 0 is media time 0 (as in the
        # ring's segments), and async=1 fills holes in the source's timestamps with silence
        args += ["-map", "0:a:0", "-af", "aresample=async=1:first_pts=0", "-ac", "1"]
        args += ["-ar", str(SAMPLE_RATE), "-c:a", "pcm_s16le", "-f", "s16le", "-flush_packets", "1", "pipe:1"]
        if self.ring is not None and segment_index is not None:
            args += self.ring.output_args(segment_index, audio=self.ring_audio, video=self.ring_video)
        return args

    # -- the stream --

    def blocks(self) -> Iterator[AudioBlock]:
        """Audio blocks of ``block_seconds`` (shorter at the end of each connection), until the
        source ends (a local file without ``loop``), :meth:`stop`, or the reconnect policy gives
        up (MediaError).  Can be iterated once."""
        if self._used:
            raise RuntimeError("LiveSource.blocks() can be iterated only once")
        self._used = True
        block_bytes = max(2, int(self.block_seconds * SAMPLE_RATE) * 2)
        attempt = 0  # reconnect attempts in the current outage
        had_data = False  # ever
        last_wall = 0.0  # clock time of the last data
        in_outage = False
        outage_mono = time.monotonic()  # since when there has been no data
        outage_reason = ""
        try:
            while not self._stop.is_set():
                index = self.ring.next_index() if self.ring is not None else None
                args = self.command(index)
                log.debug("starting %s", " ".join(args))
                try:
                    run = self._run = _Run(args, self.clock)
                except OSError as exc:
                    raise MediaError(f"cannot start ffmpeg: {exc}") from None
                buf = bytearray()
                got = False  # data in this run
                gap: Gap | None = None
                stalled = ""
                last_mono = run.started
                while True:
                    try:
                        item = run.chunks.get(timeout=_TICK)
                    except queue.Empty:
                        item = None
                    if self._stop.is_set() or item is _EOF:
                        break
                    if item is None:
                        stalled = self._stalled(run, got, last_mono, outage_mono)
                        if stalled:
                            break
                        continue
                    data, wall, last_mono = item
                    if not got:
                        got, attempt = True, 0
                        if in_outage and had_data:
                            more, resumed, wall, last_mono = self._settle(run, data, wall, last_mono)
                            data += more
                            gap = self._close_outage(last_wall, resumed, outage_reason)
                        in_outage = False
                        had_data = True
                        if self.ring is not None and index is not None:
                            self.ring.start_epoch(self.stream_time, index)
                    last_wall = wall
                    buf += data
                    while len(buf) >= block_bytes:
                        yield self._block(bytes(buf[:block_bytes]), wall, gap)
                        del buf[:block_bytes]
                        gap = None
                        if self.ring is not None:
                            self.ring.refresh()
                run.terminate()
                self._run = None
                tail = len(buf) // 2 * 2
                if tail:
                    yield self._block(bytes(buf[:tail]), last_wall, gap)
                if got and self.ring is not None:
                    self.ring.end_epoch(self.stream_time)
                if self._stop.is_set():
                    break
                reason = stalled or run.reason()
                if self.local:  # a file does not come back: it played through or it is broken
                    if run.proc.returncode == 0 and not stalled and not self.loop:
                        return
                    raise MediaError(f"cannot play {self.url}: {reason}")
                if not in_outage:
                    in_outage, outage_reason = True, reason
                    if got:
                        outage_mono = last_mono
                        log.warning(
                            "%s: source lost at %.1f s (%s)", self.stream_id, self.stream_time, reason
                        )
                    else:
                        log.warning("%s: cannot connect (%s)", self.stream_id, reason)
                else:
                    log.info("%s: reconnect attempt %d failed (%s)", self.stream_id, attempt, reason)
                now = time.monotonic()
                if self._given_up(outage_mono, now):
                    if had_data:
                        self._close_outage(last_wall, self.clock(), outage_reason)
                    raise MediaError(
                        f"live source {self.stream_id}: no data for {now - outage_mono:.1f} s, "
                        f"giving up ({outage_reason})"
                    )
                delay = self.reconnect.delay(attempt)
                attempt += 1
                if self.reconnect.give_up_after is not None:
                    delay = min(delay, max(0.0, outage_mono + self.reconnect.give_up_after - now))
                if self._stop.wait(delay):
                    break
            if in_outage and had_data:  # stopped while the source was down: the hole is real
                self._close_outage(last_wall, self.clock(), outage_reason)
        finally:
            run = self._run
            if run is not None:
                run.terminate()
                self._run = None

    # -- helpers --

    def _stalled(self, run: _Run, got: bool, last_mono: float, outage_mono: float) -> str:
        """Why to give up on this ffmpeg run while it sends nothing, or "" to keep waiting."""
        now = time.monotonic()
        if got and now - last_mono > self.stall_timeout:
            return f"stalled: no data for {now - last_mono:.1f} s"
        if not got and not self.listener and now - run.started > self.connect_timeout:
            return f"stalled: no data {now - run.started:.1f} s after connecting"
        if not got and self._given_up(outage_mono, now):
            return "no publisher connected" if self.listener else "no answer from the source"
        return ""

    def _settle(self, run: _Run, data: bytes, wall: float, mono: float) -> tuple[bytes, float, float, float]:
        """Estimate when the first sample of a reconnected source was live.

        A new connection first delivers a burst: what ffmpeg buffered while identifying the
        streams, and what the server sends from its cache.  Taking in what arrives within
        ``_SETTLE`` seconds tells how much media came faster than real time; the first sample
        was live that much before it arrived.  Returns the extra data, that estimate (clock time),
        and the clock and monotonic times of the last data taken.
        """
        first_wall, first_mono = wall, mono
        extra = bytearray()
        while (left := first_mono + _SETTLE - time.monotonic()) > 0 and not self._stop.is_set():
            try:
                item = run.chunks.get(timeout=left)
            except queue.Empty:
                break
            if item is _EOF:
                run.chunks.put(_EOF)
                break
            chunk, wall, mono = item
            extra += chunk
        media = (len(data) + len(extra)) / (2 * SAMPLE_RATE)
        burst = max(0.0, media - (mono - first_mono))
        return bytes(extra), first_wall - burst, wall, mono

    def _given_up(self, since: float, now: float) -> bool:
        limit = self.reconnect.give_up_after
        return limit is not None and now - since >= limit

    def _block(self, raw: bytes, wall: float, gap: Gap | None) -> AudioBlock:
        samples = np.frombuffer(raw, dtype=np.int16).astype(np.float32) / 32768.0
        block = AudioBlock(self.stream_time, wall, samples, gap)
        self.stream_time += len(samples) / SAMPLE_RATE
        return block

    def _close_outage(self, last_wall: float, wall: float, reason: str) -> Gap:
        """The outage is over (data is back, or the stream ends in it): stream time jumps by its
        wall-clock length."""
        start = self.stream_time
        wall = max(wall, last_wall)
        self.stream_time = start + (wall - last_wall)
        return self._record(Gap(self.stream_id, start, self.stream_time, last_wall, wall, reason))

    def _record(self, gap: Gap) -> Gap:
        self.gaps.append(gap)
        log.warning(
            "%s: gap of %.1f s at %.1f s (%s)", gap.stream_id, gap.duration, gap.start_stream_time, gap.reason
        )
        if self.on_gap is not None:
            try:
                self.on_gap(gap)
            except Exception:
                log.exception("%s: on_gap callback failed", self.stream_id)
        return gap
