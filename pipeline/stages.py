"""Pipeline stages: plain objects with ``setup()`` (load models once) and ``process(...)``.

The Ray layer (``pipeline.runners.ray_batch``) wraps these in actors; the local runner calls
them in-process.  Stages never import ray.

    PrepareStage   source → Stream header, then packed Windows of utterances (or a Failure)
    AsrStage       Window → Transcripts
    ClassifyStage  Transcripts → Violations

:class:`Prefetch` runs a PrepareStage generator in a thread, a few windows ahead of whoever
consumes them, so that decoding and VAD overlap model loading and ASR.
"""

from __future__ import annotations

import hashlib
import os
import queue
import re
import threading
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path

from pipeline import faults
from pipeline.asr.backend import make_backend
from pipeline.config import AsrConfig, Config
from pipeline.media import MediaError, decode_blocks, find_ffmpeg, probe
from pipeline.records import Stream, Transcript, Violation
from pipeline.segment import SileroVad, Window, pack_windows, segment_blocks
from pipeline.storage import local_path


@dataclass(frozen=True)
class Failure:
    """An input the pipeline could not use, with a one-line reason."""

    source: str
    reason: str


def stream_id_for(path: str, name: str | None = None) -> str:
    """A stable id from the file name and a fingerprint of its content (size, head and tail),
    so the same recording gets the same id wherever it lies and however often it is run.
    ``name``: where the name comes from when ``path`` is a local copy (of an fsspec URL)."""
    h = hashlib.sha1()
    size = os.path.getsize(path)
    h.update(str(size).encode())
    with open(path, "rb") as f:
        h.update(f.read(1 << 20))
        if size > 2 << 20:
            f.seek(-(1 << 20), os.SEEK_END)
            h.update(f.read(1 << 20))
    stem = re.sub(r"[^\w.-]+", "_", Path(name or path).stem, flags=re.UNICODE).strip("_")[:40] or "stream"
    return f"{stem}-{h.hexdigest()[:8]}"


class PrepareStage:
    """Probe and decode a source, find utterances with VAD, pack them into ASR windows."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.vad: SileroVad | None = None

    def setup(self) -> None:
        self.vad = SileroVad()
        self.ffmpeg = find_ffmpeg(self.config.media.ffmpeg)

    def process(self, source: str) -> Iterator[Stream | Window | Failure]:
        """Yield the Stream header first, then its windows; or a single Failure."""
        if self.vad is None:
            self.setup()
        try:
            path = local_path(source)  # an fsspec URL (s3://...) is copied to this node first
            info = probe(path, self.ffmpeg)
            stream = Stream(stream_id_for(path, source), source, info)
        except (MediaError, OSError) as exc:
            yield Failure(source, str(exc))
            return
        yield stream
        blocks = decode_blocks(path, self.config.media.block_seconds, self.ffmpeg, expected=info.duration)
        utterances = segment_blocks(stream.stream_id, blocks, self.config.vad, self.vad)
        try:
            for window in pack_windows(utterances, self.config.asr.window_s, self.config.asr.gap_s):
                faults.inject("prepare", window.stream_id, [u.index for u in window.utterances])
                yield window
        except MediaError as exc:
            yield Failure(source, str(exc))


class AsrStage:
    """Window → transcripts (one per utterance), with the backend named in ``asr.backend``."""

    def __init__(self, config: AsrConfig) -> None:
        self.config = config
        self.backend = make_backend(config)

    @property
    def model_name(self) -> str:
        return self.backend.model_name

    def setup(self) -> None:
        self.backend.setup()

    def process(self, window: Window) -> list[Transcript]:
        faults.inject("asr", window.stream_id, [u.index for u in window.utterances])
        return self.backend.process(window)

    def process_many(self, windows: list[Window]) -> list[list[Transcript]]:
        for window in windows:
            faults.inject("asr", window.stream_id, [u.index for u in window.utterances])
        return self.backend.process_many(windows)

    @property
    def side_by_side(self) -> int:
        """Windows this stage decodes at once (``asr.batch_mode: parallel``), 1 otherwise."""
        return self.config.side_by_side

    def submit(self, window: Window) -> Future:
        """Start transcribing ``window``: on the backend's side-by-side threads when it has
        them (the call returns at once; a window is decoded as soon as a thread is free), else
        here and now.  The future holds what :meth:`process` returns or raises."""
        if self.backend.pool is not None:
            return self.backend.pool.submit(self.process, window)
        return run_now(self.process, window)


def run_now(fn, *args) -> Future:
    """``fn(*args)`` called here and now, its result or exception in a finished Future."""
    future: Future = Future()
    try:
        future.set_result(fn(*args))
    except Exception as exc:
        future.set_exception(exc)
    return future


class Prefetch:
    """Iterate ``items`` (a PrepareStage generator: decoding, VAD, windowing) in a thread, at
    most ``depth`` items ahead of the consumer, so that a stream's first windows reach ASR while
    the rest is still being decoded (memory: ``depth`` windows).  Iterating a Prefetch gives
    the same items in the same order; an exception of ``items`` is raised to the consumer at
    the point where it happened.  :attr:`finished_at` is when ``items`` ran out
    (``time.perf_counter()``), None until then."""

    def __init__(self, items: Iterable, depth: int = 4) -> None:
        self._queue: queue.Queue = queue.Queue(max(1, depth))
        self._stop = threading.Event()
        self._done = False
        self.finished_at: float | None = None
        self._thread = threading.Thread(target=self._run, args=(items,), name="prepare", daemon=True)
        self._thread.start()

    def _run(self, items: Iterable) -> None:
        it = iter(items)
        try:
            for item in it:
                if not self._put(("item", item)):
                    return
        except Exception as exc:
            self._put(("error", exc))
            return
        finally:
            close = getattr(it, "close", None)
            if close is not None:  # a generator stopped early: its ffmpeg is ended now
                close()
        self.finished_at = time.perf_counter()
        self._put(("end", None))

    def _put(self, message) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(message, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def __iter__(self) -> Prefetch:
        return self

    def __next__(self):
        if self._done:
            raise StopIteration
        kind, value = self._queue.get()
        if kind == "item":
            return value
        self._done = True
        self._thread.join()
        if kind == "error":
            raise value
        raise StopIteration

    def close(self) -> None:
        """Stop early (the consumer gives up on the stream): the thread ends, and so does ffmpeg."""
        self._stop.set()
        self._done = True
        self._thread.join()


class ClassifyStage:
    """Transcripts → violations."""

    def __init__(self, config: Config) -> None:
        from pipeline.classify.classifier import Classifier  # here: a worker that only transcribes
        # never imports it (pypinyin's tables alone take ~0.3 s)

        self.classifier = Classifier(config.classifier)

    def setup(self) -> None:
        self.classifier.setup()

    @property
    def version(self) -> str:
        return self.classifier.version

    def process(self, transcripts: list[Transcript], source: str = "") -> list[Violation]:
        if transcripts:
            faults.inject(
                "classify", transcripts[0].utterance.stream_id, [t.utterance.index for t in transcripts]
            )
        return self.classifier.process(transcripts, source)
