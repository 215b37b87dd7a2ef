"""Run the batch pipeline in this process, stage after stage (tests, debugging, no Ray)."""

from __future__ import annotations

import time
from collections.abc import Iterable

from tqdm import tqdm

from pipeline.config import Config
from pipeline.records import Stream, StreamResult, Transcript, Violation
from pipeline.stages import AsrStage, ClassifyStage, Failure, PrepareStage


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

    def __init__(self, source: str) -> None:
        self.result = StreamResult(source)
        self.started = time.monotonic()
        self.parts: dict[int, tuple[list[Transcript], list[Violation]]] = {}

    def add(self, index: int, transcripts: list[Transcript], violations: list[Violation]) -> None:
        self.parts[index] = (transcripts, violations)

    def fail(self, reason: str) -> None:
        self.result.error = self.result.error or reason

    def finish(self) -> StreamResult:
        for i in sorted(self.parts):
            transcripts, violations = self.parts[i]
            self.result.transcripts += transcripts
            self.result.violations += violations
        self.result.seconds = time.monotonic() - self.started
        return self.result


def run_local(sources: Iterable[str], config: Config, writer, progress: Progress) -> None:
    prepare, asr, classify = PrepareStage(config), AsrStage(config.asr), ClassifyStage(config)
    for stage in (prepare, asr, classify):
        stage.setup()
    for source in sources:
        state = StreamState(source)
        pending: list = []  # (index, window) waiting for a batch of asr.batch_size

        def flush(state=state, pending=pending, source=source) -> None:
            for (k, window), transcripts in zip(pending, asr.process_many([w for _, w in pending])):
                state.add(k, transcripts, classify.process(transcripts, source))
                progress.advance(window.stream_id, window.utterances[-1].end)
            pending.clear()

        for k, item in enumerate(prepare.process(source)):
            if isinstance(item, Failure):
                state.fail(item.reason)
            elif isinstance(item, Stream):
                state.result.stream = item
                progress.add_stream(item)
            else:
                pending.append((k, item))
                if len(pending) >= config.asr.batch_size:
                    flush()
        flush()
        result = state.finish()
        progress.finish_stream(result)
        writer.submit(result)
