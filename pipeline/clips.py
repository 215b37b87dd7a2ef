"""A playable clip for each violation: the media around it, with context on both sides.

Violations on the same utterance share one clip.  Clips are re-encoded so they start exactly
where the record says (``clip_start``), which the review console relies on to seek.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

from pipeline.config import ClipConfig
from pipeline.media import MediaError, cut_clip
from pipeline.records import Stream, Violation
from pipeline.storage import local_path

log = logging.getLogger(__name__)


def clip_path(stream_id: str, start: float, utterance_index: int, ext: str = "mp4") -> str:
    """Where a clip lives, relative to the output folder (batch and live name clips alike)."""
    return f"clips/{stream_id}/{int(round(start * 1000)):09d}_{utterance_index:05d}.{ext}"


def clip_bounds(v: Violation, duration: float, context: float) -> tuple[float, float]:
    start = max(0.0, v.start - context)
    end = v.end + context
    if duration > 0:
        end = min(end, duration)
    return start, max(end, start + 0.1)


def make_clips(
    stream: Stream,
    violations: list[Violation],
    out_dir: Path,
    config: ClipConfig,
    ffmpeg_exe: str | None = None,
) -> tuple[list[Violation], list[str]]:
    """Cut clips into ``out_dir/clips/<stream_id>/``; returns violations with ``clip`` set
    (relative to ``out_dir``) and the errors of clips that could not be cut."""
    if not config.enabled or not violations:
        return violations, []
    video = config.video and stream.media.has_video
    ext = "mp4" if video else "m4a"
    done: dict[str, tuple[str, float]] = {}
    errors: list[str] = []
    out = []
    for v in violations:
        if v.utterance_id not in done:
            start, end = clip_bounds(v, stream.media.duration, config.context_s)
            rel = Path(clip_path(stream.stream_id, start, int(v.utterance_id.split(":")[-1]), ext))
            try:
                if not (out_dir / rel).exists():
                    src = local_path(stream.source)  # fsspec URLs: the local copy
                    cut_clip(src, start, end, out_dir / rel, video=video, ffmpeg_exe=ffmpeg_exe)
                done[v.utterance_id] = (rel.as_posix(), start)
            except MediaError as exc:
                errors.append(f"{stream.source} @ {v.start:.1f}s: {exc}")
                done[v.utterance_id] = ("", 0.0)
        clip, clip_start = done[v.utterance_id]
        out.append(replace(v, clip=clip, clip_start=clip_start))
    return out, errors
