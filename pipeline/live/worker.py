"""One live stream: continuous decode → VAD utterances → moderation → sink, with clips.

An utterance goes to moderation the moment VAD sees it end (or at ``live.max_utterance_s`` of
unbroken speech).  ``moderate`` is any callable that takes a one-utterance Window and returns
a ``concurrent.futures.Future`` of (transcripts, violations): a local thread running the
stages, or Ray actor pools.  At most ``live.max_inflight`` utterances of a stream are in
moderation at once; more wait in a bounded queue, and when even that overflows the oldest is
recorded as lost.  The source is never paused: live media does not wait.  A finished
utterance is written the moment its moderation returns (a collector thread), not when the
next audio block arrives.
"""

from __future__ import annotations

import bisect
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from pipeline.clips import clip_path
from pipeline.config import Config
from pipeline.live.ingest import LiveSource, ReconnectPolicy
from pipeline.live.ring import SegmentRing
from pipeline.live.sink import LiveSink
from pipeline.media import MediaError
from pipeline.records import SAMPLE_RATE, Utterance
from pipeline.segment import Segmenter, SileroVad, Window, pack_windows

log = logging.getLogger(__name__)

Moderate = Callable[[Window, str], Future]

STAGES = ("vad", "queue", "moderation", "write")  # where an utterance's latency goes (see Pending)


def live_asr_config(config: Config, threads: int | None = None):
    """The ASR settings of live workers: ``asr`` with ``live.asr_full_context`` (one short
    utterance per call, so the encoder sees its audio only) and ``threads`` CPU threads
    (default ``live.asr_threads``, for each of the ``live.asr_workers`` Ray actors)."""
    threads = config.live.asr_threads if threads is None else threads
    return config.asr.model_copy(
        # batch_size 1: live decodes one window per call, on all of its threads
        update={"cpu_threads": threads, "full_context": config.live.asr_full_context, "batch_size": 1}
    )


class WallClock:
    """Stream time → wall-clock time, from the (stream time, wall time) of arriving blocks."""

    def __init__(self, keep: int = 20000) -> None:
        self._stream: deque[float] = deque(maxlen=keep)
        self._wall: deque[float] = deque(maxlen=keep)

    def add(self, stream_end: float, wall: float) -> None:
        self._stream.append(stream_end)
        self._wall.append(wall)

    def at(self, t: float) -> float:
        if not self._stream:
            return time.time()
        i = min(bisect.bisect_left(self._stream, t), len(self._stream) - 1)
        return self._wall[i] + (t - self._stream[i])


@dataclass
class Pending:
    """Utterances on their way through moderation: one, or several packed into one window.

    Wall-clock times on the way: VAD saw the utterance end (``emitted``), it was sent to
    moderation (``submitted``), and moderation returned (``returned``)."""

    items: list[tuple[Utterance, np.ndarray]]
    future: Future | None = None
    emitted: float = 0.0
    submitted: float = 0.0
    returned: float = 0.0

    @property
    def utterances(self) -> list[Utterance]:
        return [u for u, _ in self.items]


@dataclass
class StreamStats:
    utterances: int = 0
    violations: int = 0
    lost: int = 0
    max_backlog: float = 0.0
    backlog_samples: list[float] = field(default_factory=list)
    # seconds per moderated utterance, by STAGES: end of speech → VAD's cut (the end-of-utterance
    # silence and block reads), waiting in the stream's queue, ASR + classifier (with their
    # queues and transport), and the durable write
    stages: dict[str, list[float]] = field(default_factory=lambda: {k: [] for k in STAGES})


class StreamWorker:
    def __init__(
        self,
        stream_id: str,
        url: str,
        config: Config,
        moderate: Moderate,
        sink: LiveSink,
        out_dir: Path,
        vad: SileroVad | None = None,
    ) -> None:
        self.stream_id, self.url, self.config = stream_id, url, config
        self.moderate, self.sink, self.out = moderate, sink, Path(out_dir)
        self.vad = vad or SileroVad()
        self.clock = WallClock()
        self.inflight: deque[Pending] = deque()
        self.queued: deque[Pending] = deque()
        self.stats = StreamStats()
        self.ring = SegmentRing(self.out / "ring" / stream_id, keep_seconds=config.live.ring_keep_s)
        lc = config.live
        self.source = LiveSource(
            url,
            stream_id,
            block_seconds=lc.block_s,
            ring=self.ring,
            stall_timeout=lc.stall_timeout_s,
            reconnect=ReconnectPolicy(
                initial=0.5, factor=2.0, max_delay=lc.reconnect_max_s, give_up_after=lc.give_up_after_s
            ),
            on_gap=self._on_gap,
        )
        self._clips: list[tuple[float, float, float, list[str], str]] = []  # ready_at, start, end, ids, path
        self._clip_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"clip-{stream_id}")
        self._stop = threading.Event()
        self._lock = threading.RLock()  # the ingest loop and the collector share the queues
        self._wake = threading.Event()  # set when a moderation future finishes
        self._collecting = False
        self.position = 0.0  # stream time read so far; infinite once the stream is drained
        self.reached = 0.0  # the last stream time read: what status reports, after the end too

    def stop(self) -> None:
        """Finish promptly: stop reading, then moderate and write what is in flight."""
        self._stop.set()
        self.source.stop()

    def _segmenter(self, offset: float, first_index: int) -> Segmenter:
        live = self.config.live
        vad_cfg = self.config.vad.model_copy(
            update={"max_utterance_s": live.max_utterance_s, "min_silence_ms": live.min_silence_ms}
        )
        return Segmenter(self.stream_id, vad_cfg, self.vad, time_offset=offset, first_index=first_index)

    def _collect(self) -> None:
        """Write results as soon as moderation returns them."""
        while self._collecting:
            self._wake.wait(0.5)
            self._wake.clear()
            with self._lock:
                self._pump()

    def run(self, duration: float | None = None) -> StreamStats:
        seg: Segmenter | None = None
        last_status = 0.0
        timer: threading.Timer | None = None
        self._collecting = True
        collector = threading.Thread(target=self._collect, name=f"collect-{self.stream_id}", daemon=True)
        collector.start()
        try:
            for block in self.source.blocks():
                if timer is None and duration is not None:
                    # stream time runs on through outages, so the duration is kept by the clock too
                    timer = threading.Timer(max(0.0, duration - block.stream_time) + 1.0, self.stop)
                    timer.daemon = True
                    timer.start()
                length = len(block.samples) / SAMPLE_RATE
                self.clock.add(block.stream_time + length, block.wall_time)
                if seg is None or abs(block.stream_time - seg.position) > 0.25:
                    if seg is not None:  # a reconnect: close the utterance cut by the outage
                        self._enqueue(seg.flush())
                    seg = self._segmenter(block.stream_time, seg.next_index if seg else 0)
                self._enqueue(seg.feed(block.samples))
                self.position = self.reached = block.stream_time + length
                with self._lock:
                    self._pump()
                if time.monotonic() - last_status > 2.0:
                    self._status()
                    last_status = time.monotonic()
                if self._stop.is_set() or (duration is not None and self.position >= duration):
                    break
        except MediaError as exc:
            log.error("%s: giving up on the source: %s", self.stream_id, exc)
        finally:
            if timer is not None:
                timer.cancel()
            self.source.stop()
            self._collecting = False
            self._wake.set()
            collector.join()
            if seg is not None:
                self._enqueue(seg.flush())
            self._drain()
            self._status()
        return self.stats

    def _enqueue(self, utterances) -> None:
        with self._lock:
            for utt, audio in utterances:
                self.stats.utterances += 1
                self.queued.append(Pending([(utt, audio)], emitted=time.time()))
                while len(self.queued) > self.config.live.max_queued:
                    ((old, _),) = self.queued.popleft().items
                    self.stats.lost += 1
                    self.sink.lost(self.stream_id, old.start, old.end, "backlog overflow")
            self._pump()

    def _returned(self, p: Pending) -> None:
        p.returned = time.time()
        self._wake.set()

    def _pump(self) -> None:
        """Collect finished utterances in order, start queued ones, cut clips that are due."""
        while self.inflight and self.inflight[0].future.done():
            self._finish(self.inflight.popleft())
        while self.queued and len(self.inflight) < self.config.live.max_inflight:
            p = self._take_packed()
            window = next(pack_windows(p.items, self.config.asr.window_s, self.config.asr.gap_s))
            p.submitted = time.time()
            p.future = self.moderate(window, self.url)
            p.future.add_done_callback(lambda _, p=p: self._returned(p))
            self.inflight.append(p)
        backlog = self.backlog
        self.stats.max_backlog = max(self.stats.max_backlog, backlog)
        if self._clips:
            due = [c for c in self._clips if self._clip_ready(c)]
            self._clips = [c for c in self._clips if c not in due]
            for _, start, end, ids, path in due:
                if self.position == float("inf"):  # the stream is over: the clip ends where it did
                    self.ring.refresh()
                    end = min(end, max((b for _, b in self.ring.spans()), default=end))
                self._clip_pool.submit(self._cut, start, end, ids, path)

    def _take_packed(self) -> Pending:
        """The next queued utterance, with the ones behind it that fit in the same Whisper
        window: a stream that falls behind catches up with fewer, fuller windows."""
        first = self.queued.popleft()
        items = first.items
        size = sum(len(a) for _, a in items)
        limit = self.config.asr.window_s * SAMPLE_RATE
        gap = self.config.asr.gap_s * SAMPLE_RATE
        while self.queued and size + gap + len(self.queued[0].items[0][1]) <= limit:
            item = self.queued.popleft().items[0]
            items.append(item)
            size += gap + len(item[1])
        return Pending(items, emitted=first.emitted)

    def _clip_ready(self, clip) -> bool:
        """The ring holds finished segments covering the clip (or it never will: try anyway and
        record why it failed)."""
        give_up_at, start, end = clip[0], clip[1], clip[2]
        if self.position >= give_up_at:
            return True
        if self.position < end:
            return False
        self.ring.refresh()
        return any(a <= start + 0.05 and b >= end - 0.05 for a, b in self.ring.spans())

    @property
    def backlog(self) -> float:
        """Seconds of stream between the oldest unmoderated utterance's end and now."""
        waiting = [u.end for p in (*self.inflight, *self.queued) for u in p.utterances]
        return max(0.0, self.position - min(waiting)) if waiting else 0.0

    def _finish(self, p: Pending) -> None:
        try:
            transcripts, violations = p.future.result()
        except Exception as exc:  # ASR or classifier failed for good (after the pool's retries)
            for u in p.utterances:
                self.stats.lost += 1
                self.sink.lost(self.stream_id, u.start, u.end, f"{type(exc).__name__}: {exc}"[:300])
            return
        ctx = self.config.clips.context_s
        by_utterance = {u.utterance_id: u for u in p.utterances}
        clips: dict[str, tuple[str, float]] = {}
        if self.config.clips.enabled:
            for v in violations:
                u = by_utterance[v.utterance_id]
                start = max(0.0, u.start - ctx)
                clips[u.utterance_id] = (clip_path(self.stream_id, start, u.index), start)
            violations = [
                replace(v, clip=clips[v.utterance_id][0], clip_start=clips[v.utterance_id][1])
                for v in violations
            ]
        wall = {u.utterance_id: (self.clock.at(u.start), self.clock.at(u.end)) for u in p.utterances}
        written = self.sink.results(transcripts, violations, wall)
        done = time.time()
        self.stats.violations += len(written)
        for u in p.utterances:
            end_wall = wall[u.utterance_id][1]
            returned = p.returned or done
            for stage, seconds in zip(
                STAGES,
                (p.emitted - end_wall, p.submitted - p.emitted, returned - p.submitted, done - returned),
                strict=True,
            ):
                self.stats.stages[stage].append(max(0.0, seconds))
        for uid, (clip, start) in clips.items():
            u = by_utterance[uid]
            ids = [v.violation_id for v in written if v.utterance_id == uid]
            give_up_at = u.end + ctx + 30.0  # a source with sparse keyframes closes segments late
            self._clips.append((give_up_at, start, u.end + ctx, ids, clip))

    def _cut(self, start: float, end: float, ids: list[str], rel: str) -> None:
        self.ring.refresh()
        middle = (start + end) / 2
        for a, b in self.ring.spans():  # near an outage, keep the side the utterance is on
            if a <= middle <= b:
                start, end = max(start, a), min(end, b)
        try:
            self.ring.clip(start, end, self.out / rel, video=self.config.clips.video)
            self.sink.clip_done(ids, rel, start)
        except (MediaError, OSError) as exc:
            self.sink.clip_failed(ids, str(exc))

    def _drain(self, timeout: float = 60.0) -> None:
        """Moderate and write everything still queued or in flight, then the due clips."""
        deadline = time.monotonic() + timeout
        while (self.inflight or self.queued) and time.monotonic() < deadline:
            with self._lock:
                self._pump()
            if self.inflight:
                try:
                    self.inflight[0].future.result(timeout=max(0.1, deadline - time.monotonic()))
                except Exception:
                    pass
        for p in (*self.inflight, *self.queued):
            for u in p.utterances:
                self.sink.lost(self.stream_id, u.start, u.end, "shutdown before moderation")
        self.inflight.clear()
        self.queued.clear()
        self.position = float("inf")
        self._pump()
        self._clip_pool.shutdown(wait=True)

    def _status(self) -> None:
        with self._lock:
            backlog = self.backlog
            queued = sum(len(p.items) for p in (*self.inflight, *self.queued))
        self.stats.backlog_samples.append(backlog)
        self.sink.stream(
            self.stream_id,
            self.url,
            self.reached,
            backlog,
            has_video=True,
            queued=queued,
        )

    def _on_gap(self, gap) -> None:
        self.sink.gap(
            self.stream_id,
            gap.start_stream_time,
            gap.end_stream_time,
            gap.start_wall,
            gap.end_wall,
            gap.reason,
        )


class LocalModerator:
    """Moderation in one background thread of this process (no Ray): ASR then classifier."""

    def __init__(self, config: Config) -> None:
        from pipeline.stages import AsrStage, ClassifyStage

        self.asr = AsrStage(live_asr_config(config, threads=config.asr.cpu_threads))  # the only decoder
        self.classify = ClassifyStage(config)
        self.asr.setup()
        self.classify.setup()
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="moderate")

    def _run(self, window: Window, source: str):
        transcripts = self.asr.process(window)
        return transcripts, self.classify.process(transcripts, source)

    def __call__(self, window: Window, source: str) -> Future:
        return self.pool.submit(self._run, window, source)

    def close(self) -> None:
        self.pool.shutdown(wait=True)
