"""Run the batch pipeline in this process, stage after stage (tests, debugging, no Ray)."""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Iterable
from concurrent.futures import FIRST_COMPLETED, wait
from typing import TYPE_CHECKING

from tqdm import tqdm

from pipeline.config import Config
from pipeline.records import SegmentFailure, Stream, StreamResult, Transcript, Violation
from pipeline.segment import Window
from pipeline.stages import AsrStage, ClassifyStage, Failure, Prefetch, PrepareStage, run_now

if TYPE_CHECKING:  # the manifest (SQLAlchemy) is imported by whoever makes one
    from pipeline.manifest import Entry, Manifest

log = logging.getLogger(__name__)


class Progress:
    """A progress bar in seconds of audio; the total grows as streams are probed."""

    def __init__(self, enabled: bool = True) -> None:
        self.bar = tqdm(
            total=0,
            unit="s",
            disable=not enabled,
            desc="audio",
            bar_format="{l_bar}{bar}| {n:.0f}/{total:.0f} s of audio [{elapsed}<{remaining}]{postfix}",
        )
        self.done: dict[str, float] = {}
        self.finished = 0

    def add_stream(self, stream: Stream) -> None:
        self.bar.total += stream.media.duration
        self.bar.refresh()

    def advance(self, stream_id: str, until: float) -> None:
        before = self.done.get(stream_id, 0.0)
        if until > before:
            self.done[stream_id] = until
            self.bar.update(until - before)

    def finish_stream(self, result: StreamResult) -> None:
        if result.stream:
            self.advance(result.stream.stream_id, result.stream.media.duration)
        self.finished += 1
        self.bar.set_postfix_str(f" {self.finished} streams done", refresh=True)

    def close(self) -> None:
        self.bar.close()


class StreamState:
    """Collects what the stages produce for one stream, whatever order windows finish in."""

    def __init__(self, source: str, entry: Entry | None = None) -> None:
        self.result = StreamResult(source)
        self.entry = entry
        self.started = time.monotonic()
        self.parts: dict[int, tuple[list[Transcript], list[Violation]]] = {}
        self.position = 0.0  # stream time up to which windows have been received

    def received(self, window: Window) -> None:
        self.position = max(self.position, window.utterances[-1].end)

    def add(self, index: int, transcripts: list[Transcript], violations: list[Violation]) -> None:
        self.parts[index] = (transcripts, violations)

    def fail(self, reason: str) -> None:
        self.result.error = self.result.error or reason

    def finish(self) -> StreamResult:
        for i in sorted(self.parts):
            transcripts, violations = self.parts[i]
            self.result.transcripts += transcripts
            self.result.violations += violations
        self.result.failures.sort(key=lambda f: f.index)
        self.result.seconds = time.monotonic() - self.started
        return self.result


class Tracker:
    """Where runners report what happens to each stream and window: the stream's results, the
    manifest (resume), the progress bar, the metrics and, when a stream is complete, the
    writer.  Both runners drive it the same way, so resume and failure records do not depend
    on where the work ran."""

    def __init__(self, writer, progress: Progress, manifest: Manifest | None = None, metrics=None) -> None:
        self.writer, self.progress, self.manifest, self.metrics = writer, progress, manifest, metrics

    def begin(self, source: str) -> StreamState:
        return StreamState(source, self.manifest.open(source) if self.manifest else None)

    def skip_if_done(self, state: StreamState) -> bool:
        """An input the manifest holds as finished: write its stored results, run nothing."""
        entry = state.entry
        if entry is None or not entry.done:
            return False
        result = entry.result()
        self.progress.add_stream(result.stream)
        if self.metrics:
            self.metrics.streams.labels("skipped").inc()
        self.progress.finish_stream(result)
        self.writer.submit(result)
        return True

    def stream(self, state: StreamState, stream: Stream) -> None:
        state.result.stream = stream
        self.progress.add_stream(stream)
        if self.manifest:
            self.manifest.set_stream(state.result.source, stream)

    def cached(self, state: StreamState, k: int, window: Window) -> bool:
        """Window ``k`` was finished by an earlier run: take its stored results."""
        hit = state.entry.cached(k, window.utterances[0].utterance_id) if state.entry else None
        if hit is None:
            return False
        state.add(k, *hit)
        if self.manifest:
            self.manifest.reused_windows += 1
        self.progress.advance(window.stream_id, window.utterances[-1].end)
        return True

    def window_done(self, state: StreamState, k: int, window: Window, transcripts, violations) -> None:
        state.add(k, transcripts, violations)
        if self.manifest:
            self.manifest.add_window(
                state.result.source, k, window.utterances[0].utterance_id, transcripts, violations
            )
        self.progress.advance(window.stream_id, window.utterances[-1].end)
        if self.metrics:
            us = window.utterances
            self.metrics.moderated(len(us), us[-1].end - us[0].start, [v.label.category for v in violations])
            self.metrics.batch_progress(us[-1].end - us[0].start)

    def window_failed(self, state: StreamState, k: int, window: Window, reason: str, tries: int) -> None:
        us = window.utterances
        self._record(
            state,
            SegmentFailure(window.stream_id, state.result.source, k, us[0].start, us[-1].end, reason, tries),
        )

    def prepare_failed(self, state: StreamState, k: int, reason: str, tries: int) -> None:
        """Decoding or VAD kept crashing at the same place: the windows before it stand, the rest
        of the stream is recorded as one failed segment (or the input as failed, if nothing of
        it was read)."""
        s = state.result.stream
        if s is None:
            state.fail(f"preparing failed after {tries} tries: {reason}")
            return
        end = max(s.media.duration, state.position)
        self._record(
            state, SegmentFailure(s.stream_id, s.source, k, state.position, end, f"decoding: {reason}", tries)
        )

    def _record(self, state: StreamState, f: SegmentFailure) -> None:
        log.error(
            "%s: %.1f–%.1f s not moderated after %d tries, recorded as failed: %s",
            f.stream_id,
            f.start,
            f.end,
            f.tries,
            f.reason,
        )
        state.result.failures.append(f)
        self.progress.advance(f.stream_id, f.end)
        if self.metrics:
            self.metrics.failures.labels("segment").inc()

    def finish(self, state: StreamState) -> None:
        result = state.finish()
        if self.manifest:
            self.manifest.finish(result.source, result)
        if self.metrics:
            self.metrics.streams.labels("failed" if result.error else "done").inc()
            if result.error:
                self.metrics.failures.labels("input").inc()
        self.progress.finish_stream(result)
        self.writer.submit(result)


def attempt(fn, tries: int) -> tuple[object | None, str, int]:
    """Call ``fn`` up to ``tries`` times: (result, "", n) or (None, last error, tries)."""
    error = ""
    for n in range(1, tries + 1):
        try:
            return fn(), "", n
        except Exception as exc:  # a poison window: recorded by the caller after the last try
            error = one_line(exc)
            log.warning("try %d of %d failed: %s", n, tries, error)
    return None, error, tries


def one_line(exc: BaseException) -> str:
    cause = getattr(exc, "cause", None) or exc
    text = str(cause).strip().splitlines()
    return f"{type(cause).__name__}: {text[-1][:200] if text else ''}"


PREFETCH_WINDOWS = 4  # windows the prepare thread may run ahead of ASR (memory: ~2 MB each)


def run_local(
    sources: Iterable[str],
    config: Config,
    writer,
    progress: Progress,
    manifest=None,
    metrics=None,
    classify: bool = True,
    timings: dict | None = None,
) -> None:
    """Moderate ``sources`` one after the other in this process.

    A stream's decoding, VAD and windowing run in a thread (:class:`Prefetch`) a few windows
    ahead of ASR, and the models load while the first stream is being decoded: ASR starts on
    the first window instead of after the whole file.  With ``asr.batch_mode: parallel``
    windows are handed to the decoders one by one, each as soon as a decoder is free (never
    waiting for a batch to fill or for its slowest window); ``batched`` sends
    ``asr.batch_size`` windows at a time.  ``classify=False`` transcribes only (``bench asr``);
    ``timings``, when given, receives ``time.perf_counter()`` marks: ``models`` (loaded),
    ``first_window``, ``prepared`` (the last stream fully decoded) and ``done``."""
    track = Tracker(writer, progress, manifest, metrics)
    prepare, asr = PrepareStage(config), AsrStage(config.asr)
    classifier: ClassifyStage | None = None
    prepare.setup()
    loaded = False
    tries_allowed = config.ray.max_tries
    batched = config.asr.windows_per_call > 1
    marks = timings if timings is not None else {}

    def classify_one(transcripts: list[Transcript], source: str) -> list[Violation]:
        return classifier.process(transcripts, source) if classifier else []

    def moderate_one(state: StreamState, k: int, window: Window, source: str, tried: int = 0, error=""):
        """Window ``k`` alone, with what is left of its tries (``tried`` already failed)."""

        def moderate():
            transcripts = asr.process(window)
            return transcripts, classify_one(transcripts, source)

        out, n = None, tried
        if tried < tries_allowed:
            out, error, n = attempt(moderate, tries_allowed - tried)
            n += tried
        if out is None:
            track.window_failed(state, k, window, error, n)
        else:
            track.window_done(state, k, window, *out)

    inflight: dict = {}  # Future -> (state, source, [(k, window)])

    def submit(state: StreamState, source: str, jobs: list) -> None:
        # one window: to a free decoder; several (asr.batch_mode batched): one call, here and now
        future = asr.submit(jobs[0][1]) if len(jobs) == 1 else run_now(asr.process_many, [w for _, w in jobs])
        inflight[future] = (state, source, jobs)

    def settle(block: bool = True) -> None:
        """Take the results of finished ASR calls: classify, record; a failed call's windows are
        tried again one by one (a single window's failed first try counts as one of its tries;
        a failed batch does not count against its windows)."""
        done, _ = wait(list(inflight), return_when=FIRST_COMPLETED, timeout=None if block else 0)
        for future in sorted(done, key=lambda f: inflight[f][2][0][0]):
            state, source, jobs = inflight.pop(future)
            try:
                result = future.result()
                result = [result] if len(jobs) == 1 else result
                results = [(t, classify_one(t, source)) for t in result]
            except Exception as exc:
                if len(jobs) > 1:
                    log.warning(
                        "a batch of %d windows failed, trying them one by one: %s", len(jobs), one_line(exc)
                    )
                    for k, window in jobs:
                        moderate_one(state, k, window, source)
                else:
                    log.warning("try 1 of %d failed: %s", tries_allowed, one_line(exc))
                    moderate_one(state, *jobs[0], source, tried=1, error=one_line(exc))
                continue
            for (k, window), (transcripts, violations) in zip(jobs, results, strict=True):
                track.window_done(state, k, window, transcripts, violations)

    for source in sources:
        state = track.begin(source)
        if track.skip_if_done(state):
            continue
        items = Prefetch(enumerate(prepare.process(source)), PREFETCH_WINDOWS)
        if not loaded:  # while the first stream is decoded and its utterances found
            asr.setup()
            if classify:
                classifier = ClassifyStage(config)
                classifier.setup()
            loaded = True
            marks["models"] = time.perf_counter()
        limit = asr.side_by_side + 1 if asr.side_by_side > 1 else 1  # one more waits in the pool
        pending: list = []  # (index, window) waiting for a batch (batch_mode batched)
        received, tries = 0, 1
        try:
            while True:
                if len(inflight) >= limit:
                    settle()
                    continue
                try:
                    k, item = next(items)
                except StopIteration:
                    break
                except Exception as exc:  # decoding or VAD crashed: again from where it stopped
                    if tries >= tries_allowed:
                        if pending:
                            submit(state, source, pending)
                            pending = []
                        while inflight:
                            settle()
                        track.prepare_failed(state, received, one_line(exc), tries)
                        break
                    log.warning("%s: preparing failed (try %d), retrying: %s", source, tries, one_line(exc))
                    tries += 1
                    items = Prefetch(
                        itertools.islice(enumerate(prepare.process(source)), received, None), PREFETCH_WINDOWS
                    )
                    continue
                received = k + 1
                if isinstance(item, Failure):
                    state.fail(item.reason)
                elif isinstance(item, Stream):
                    track.stream(state, item)
                else:
                    marks.setdefault("first_window", time.perf_counter())
                    state.received(item)
                    if track.cached(state, k, item):
                        continue
                    if batched:
                        pending.append((k, item))
                        if len(pending) >= config.asr.batch_size:
                            submit(state, source, pending)
                            pending = []
                    else:
                        submit(state, source, [(k, item)])
            if pending:
                submit(state, source, pending)
            while inflight:
                settle()
        finally:
            items.close()
        if items.finished_at is not None:
            marks["prepared"] = items.finished_at
        track.finish(state)
    marks["done"] = time.perf_counter()
