"""Pipeline stages: plain objects with ``setup()`` (load models once) and ``process(...)``.

The Ray layer (``pipeline.runners.ray_batch``) wraps these in actors; the local runner calls
them in-process.  Stages never import ray.

    PrepareStage   source → Stream header, then packed Windows of utterances (or a Failure)
    AsrStage       Window → Transcripts
    ClassifyStage  Transcripts → Violations
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from pipeline import faults
from pipeline.asr.backend import make_backend
from pipeline.classify.classifier import Classifier
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


class ClassifyStage:
    """Transcripts → violations."""

    def __init__(self, config: Config) -> None:
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
