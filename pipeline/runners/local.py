"""Run the batch pipeline in this process, stage after stage (tests, debugging, no Ray)."""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Iterable

from tqdm import tqdm

from pipeline.config import Config
from pipeline.manifest import Entry, Manifest
from pipeline.records import SegmentFailure, Stream, StreamResult, Transcript, Violation
from pipeline.segment import Window
from pipeline.stages import AsrStage, ClassifyStage, Failure, PrepareStage

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


def run_local(
    sources: Iterable[str], config: Config, writer, progress: Progress, manifest=None, metrics=None
) -> None:
    track = Tracker(writer, progress, manifest, metrics)
    prepare, asr, classify = PrepareStage(config), AsrStage(config.asr), ClassifyStage(config)
    for stage in (prepare, asr, classify):
        stage.setup()
    tries_allowed = config.ray.max_tries

    def moderate_one(state: StreamState, k: int, window: Window, source: str) -> None:
        def moderate():
            transcripts = asr.process(window)
            return transcripts, classify.process(transcripts, source)

        out, error, n = attempt(moderate, tries_allowed)
        if out is None:
            track.window_failed(state, k, window, error, n)
        else:
            track.window_done(state, k, window, *out)

    def flush(state: StreamState, pending: list, source: str) -> None:
        """Windows waiting for a batch (``asr.batch_size``): decoded together on the first try;
        when that fails, each on its own with the usual bounded retries."""
        if len(pending) > 1:
            try:
                batch = asr.process_many([w for _, w in pending])
                done = [
                    (k, w, t, classify.process(t, source)) for (k, w), t in zip(pending, batch, strict=True)
                ]
            except Exception as exc:
                log.warning(
                    "a batch of %d windows failed, trying them one by one: %s", len(pending), one_line(exc)
                )
            else:
                for k, window, transcripts, violations in done:
                    track.window_done(state, k, window, transcripts, violations)
                pending.clear()
        for k, window in pending:
            moderate_one(state, k, window, source)
        pending.clear()

    for source in sources:
        state = track.begin(source)
        if track.skip_if_done(state):
            continue
        pending: list = []  # (index, window) waiting for a batch of asr.batch_size
        items, received, tries = enumerate(prepare.process(source)), 0, 1
        while True:
            try:
                k, item = next(items)
            except StopIteration:
                break
            except Exception as exc:  # decoding or VAD crashed: again from where it stopped
                if tries >= tries_allowed:
                    flush(state, pending, source)
                    track.prepare_failed(state, received, one_line(exc), tries)
                    break
                log.warning("%s: preparing failed (try %d), retrying: %s", source, tries, one_line(exc))
                tries += 1
                items = itertools.islice(enumerate(prepare.process(source)), received, None)
                continue
            received = k + 1
            if isinstance(item, Failure):
                state.fail(item.reason)
            elif isinstance(item, Stream):
                track.stream(state, item)
            else:
                state.received(item)
                if not track.cached(state, k, item):
                    pending.append((k, item))
                    if len(pending) >= config.asr.batch_size:
                        flush(state, pending, source)
        flush(state, pending, source)
        track.finish(state)
