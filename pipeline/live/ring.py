"""The rolling media buffer of a live source: its last minutes as short MPEG-TS segments.

The :class:`~pipeline.live.ingest.LiveSource`'s ffmpeg writes, next to the audio it decodes, a
copy of the source into ``seg%09d.ts`` files of about ``segment_time`` seconds (ffmpeg's segment
muxer), and lists every finished segment with its exact start and end in a CSV file per ffmpeg
run.  Each run's timeline starts at 0, so the ring only needs to know the stream time at which a
run started (:meth:`SegmentRing.start_epoch`) to place every segment in stream time, through
reconnects.  Segments older than ``keep_seconds`` are deleted, so disk use stays bounded, and
:meth:`SegmentRing.clip` cuts any span still held into a playable clip for a moderator.

MPEG-TS is used because a segment stays readable even when ffmpeg is killed while writing it.
"""

from __future__ import annotations

import logging
import re
import threading
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from pipeline.media import MediaError, cut_clip, find_ffmpeg

log = logging.getLogger(__name__)

SEGMENT_PATTERN = "seg%09d.ts"
_SEGMENT_NAME = re.compile(r"^seg(\d{9})\.ts$")
_LISTING_NAME = re.compile(r"^list(\d{9})\.csv$")
_TOLERANCE = 0.05  # seconds: AAC priming and rounding shift segment edges by a few tens of ms


@dataclass(frozen=True)
class Segment:
    """One finished segment file and the stretch of stream time it holds."""

    index: int
    path: Path
    start: float  # stream time
    end: float

    @property
    def duration(self) -> float:
        return self.end - self.start


@dataclass
class _Epoch:
    """One ffmpeg run: its segments are numbered from ``first_index`` and timed from ``offset``."""

    first_index: int
    listing: Path
    offset: float  # stream time of the run's time 0
    read_pos: int = 0  # bytes of the listing already parsed
    last_index: int = -1  # highest index listed so far
    last_end: float | None = None  # stream time at which the last listed segment ends
    end: float | None = None  # stream time at which the run stopped, once it has
    closed: bool = False  # ended and every one of its segments accounted for


class SegmentRing:
    """Segments of one live source in ``folder``, mapped to stream time, pruned to ``keep_seconds``.

    The folder belongs to the ring: segment files and listings left there by an earlier session
    are deleted when the ring is created, since their stream times are unknown.  Thread-safe:
    the ingest thread calls :meth:`refresh`, workers call :meth:`clip`.
    """

    def __init__(
        self,
        folder: Path,
        keep_seconds: float = 120.0,
        *,
        segment_time: float = 2.0,
        ffmpeg_exe: str | None = None,
    ) -> None:
        if keep_seconds <= 0 or segment_time <= 0:
            raise ValueError("keep_seconds and segment_time must be positive")
        self.folder = Path(folder)
        self.keep_seconds = keep_seconds
        self.segment_time = segment_time
        self.ffmpeg_exe = ffmpeg_exe
        self.folder.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._segments: dict[int, Segment] = {}  # insertion order is index order
        self._epochs: list[_Epoch] = []
        self._pinned: Counter[int] = Counter()  # segments a clip is reading
        for path in self.folder.iterdir():
            if _SEGMENT_NAME.match(path.name) or _LISTING_NAME.match(path.name):
                path.unlink(missing_ok=True)

    # -- what the ingest side calls --

    def next_index(self) -> int:
        """The number the next ffmpeg run should give its first segment (after every file so far)."""
        with self._lock:
            used = [int(m[1]) for p in self.folder.iterdir() if (m := _SEGMENT_NAME.match(p.name))]
            used += [e.last_index for e in self._epochs] + [e.first_index for e in self._epochs]
            return max(used, default=-1) + 1

    def listing_path(self, start_index: int) -> Path:
        return self.folder / f"list{start_index:09d}.csv"

    def output_args(self, start_index: int, *, audio: str = "aac", video: str = "copy") -> list[str]:
        """ffmpeg output options that write the first video and audio stream of input 0 into the ring.

        ``audio``: ``"aac"`` (re-encode; the default, because stream copy into MPEG-TS never fails
        loudly: PCM, G.711 or Vorbis audio would be stored as an unplayable data stream) or
        ``"copy"`` (for sources known to carry AAC, MP3, AC-3 or Opus).  ``video``: ``"copy"``
        (H.264, HEVC or MPEG-2, what RTMP, HLS, SRT and RTSP sources carry) or ``"h264"``
        (re-encode, costly).
        """
        if audio == "aac":
            acodec = ["-c:a", "aac", "-b:a", "96k"]
        elif audio == "copy":
            acodec = ["-c:a", "copy"]
        else:
            raise ValueError(f"ring audio must be 'aac' or 'copy', not {audio!r}")
        if video == "copy":
            vcodec = ["-c:v", "copy"]
        elif video == "h264":
            vcodec = ["-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p"]
        else:
            raise ValueError(f"ring video must be 'copy' or 'h264', not {video!r}")
        return [
            "-map", "0:v:0?", "-map", "0:a:0", *vcodec, *acodec,
            "-f", "segment", "-segment_time", f"{self.segment_time:g}", "-reset_timestamps", "1",
            "-segment_format", "mpegts", "-segment_start_number", str(start_index),
            "-segment_list", str(self.listing_path(start_index)), "-segment_list_type", "csv",
            str(self.folder / SEGMENT_PATTERN),
        ]  # fmt: skip

    def start_epoch(self, stream_time_at_start: float, segment_index_start: int) -> None:
        """A run that writes segments from ``segment_index_start`` has its time 0 at this stream time."""
        with self._lock:
            self._epochs.append(
                _Epoch(segment_index_start, self.listing_path(segment_index_start), stream_time_at_start)
            )
            for epoch in self._epochs[:-1]:  # normally ended already (end_epoch); if not, end them here
                if epoch.end is None:
                    epoch.end = epoch.last_end if epoch.last_end is not None else stream_time_at_start
                if not epoch.closed:
                    self._read_listing(epoch)
                    self._close_epoch(epoch)

    def end_epoch(self, stream_time: float) -> None:
        """The current run has stopped (its ffmpeg exited) with its media ending at ``stream_time``."""
        with self._lock:
            if self._epochs and self._epochs[-1].end is None:
                self._epochs[-1].end = stream_time
            self.refresh()

    def refresh(self) -> None:
        """Take in the segments finished since the last call and delete those too old to keep."""
        with self._lock:
            for epoch in self._epochs:
                if not epoch.closed:
                    self._read_listing(epoch)
                    if epoch.end is not None:
                        self._close_epoch(epoch)
            self._prune()

    # -- what workers call --

    @property
    def segments(self) -> list[Segment]:
        """The finished segments held, oldest first."""
        with self._lock:
            return list(self._segments.values())

    def spans(self) -> list[tuple[float, float]]:
        """The stretches of stream time held without a break (one per outage-free stretch)."""
        out: list[tuple[float, float]] = []
        for seg in self.segments:
            if out and abs(seg.start - out[-1][1]) <= _TOLERANCE:
                out[-1] = (out[-1][0], seg.end)
            else:
                out.append((seg.start, seg.end))
        return out

    def clip(self, start: float, end: float, dst: Path, video: bool) -> Path:
        """Cut exactly ``[start, end]`` (stream time) to ``dst``, re-encoded: H.264 veryfast + AAC
        (an ``.mp4`` ``dst``) with ``video``, AAC only (``.m4a``) without.

        Raises MediaError when the span is no longer held, not finished yet (try again a segment
        later), or crosses an outage (see :meth:`spans`).
        """
        if end <= start:
            raise MediaError(f"empty clip span {start:.2f}–{end:.2f} s")
        with self._lock:
            self.refresh()
            chosen = self._covering(start, end)
            self._pinned.update(s.index for s in chosen)
        listing = self.folder / f".clip-{uuid.uuid4().hex}.ffconcat"
        try:
            # relative names keep the concat demuxer's safe mode happy; durations come from the
            # segment lists, so the concatenated timeline matches stream time exactly
            lines = ["ffconcat version 1.0"]
            for seg in chosen:
                lines += [f"file {seg.path.name}", f"duration {seg.duration:.6f}"]
            listing.write_text("\n".join(lines) + "\n", encoding="utf-8")
            base = chosen[0].start
            return cut_clip(
                str(listing),
                start - base,
                end - base,
                dst,
                video=video,
                ffmpeg_exe=self.ffmpeg_exe or find_ffmpeg(),
            )
        finally:
            listing.unlink(missing_ok=True)
            with self._lock:
                self._pinned.subtract(s.index for s in chosen)
                self._pinned = +self._pinned

    # -- internals --

    def _covering(self, start: float, end: float) -> list[Segment]:
        held = list(self._segments.values())
        if not held:
            raise MediaError(f"clip {start:.1f}–{end:.1f} s: the ring holds nothing yet")
        have = f"the ring holds {held[0].start:.1f}–{held[-1].end:.1f} s"
        if start < held[0].start - _TOLERANCE:
            raise MediaError(f"clip {start:.1f}–{end:.1f} s is no longer in the ring ({have})")
        if end > held[-1].end + _TOLERANCE:
            raise MediaError(
                f"clip {start:.1f}–{end:.1f} s is not in the ring yet ({have}; segments are listed when finished)"
            )
        chosen = [s for s in held if s.end > start and s.start < end]
        for a, b in zip(chosen, chosen[1:]):
            if abs(b.start - a.end) > _TOLERANCE:
                raise MediaError(
                    f"clip {start:.1f}–{end:.1f} s crosses an outage at {a.end:.1f}–{b.start:.1f} s"
                )
        if not chosen or chosen[0].start > start + _TOLERANCE:
            at = chosen[0].start if chosen else end
            raise MediaError(
                f"clip {start:.1f}–{end:.1f} s starts in an outage (media resumes at {at:.1f} s)"
            )
        return chosen

    def _read_listing(self, epoch: _Epoch) -> None:
        try:
            with open(epoch.listing, "rb") as f:
                f.seek(epoch.read_pos)
                data = f.read()
        except FileNotFoundError:
            return
        complete = data[: data.rfind(b"\n") + 1]
        epoch.read_pos += len(complete)
        for line in complete.decode("utf-8", "replace").splitlines():
            parts = line.strip().rsplit(",", 2)
            m = _SEGMENT_NAME.match(parts[0]) if len(parts) == 3 else None
            if not m:
                continue
            try:
                a, b = float(parts[1]), float(parts[2])
            except ValueError:
                continue
            self._add(epoch, int(m[1]), epoch.offset + a, epoch.offset + b)

    def _add(self, epoch: _Epoch, index: int, start: float, end: float) -> None:
        path = self.folder / (SEGMENT_PATTERN % index)
        if path.exists() and end > start:
            self._segments[index] = Segment(index, path, start, end)
        epoch.last_index = max(epoch.last_index, index)
        epoch.last_end = end

    def _close_epoch(self, epoch: _Epoch) -> None:
        """A stopped run's last segment may be unlisted (ffmpeg killed): it ends where the run ended."""
        after = [e.first_index for e in self._epochs if e.first_index > epoch.first_index]
        limit = min(after, default=None)
        index = max(epoch.last_index + 1, epoch.first_index)
        path = self.folder / (SEGMENT_PATTERN % index)
        start = epoch.last_end if epoch.last_end is not None else epoch.offset
        if (limit is None or index < limit) and path.exists() and epoch.end is not None:
            if epoch.end - start > _TOLERANCE and path.stat().st_size > 0:
                self._add(epoch, index, start, epoch.end)
            else:
                path.unlink(missing_ok=True)
        epoch.closed = True

    def _prune(self) -> None:
        if self._segments:
            newest = max(s.end for s in self._segments.values())
            for index, seg in list(self._segments.items()):
                if seg.end < newest - self.keep_seconds and not self._pinned[index]:
                    seg.path.unlink(missing_ok=True)
                    del self._segments[index]
        # files no run accounts for (a run that died before its first audio) and spent listings
        known = set(self._segments)
        current = self._epochs[-1].first_index if self._epochs else None
        for path in self.folder.iterdir():
            m = _SEGMENT_NAME.match(path.name)
            if m and current is not None and int(m[1]) < current and int(m[1]) not in known:
                path.unlink(missing_ok=True)
        keep: list[_Epoch] = []
        for i, epoch in enumerate(self._epochs):
            last = i == len(self._epochs) - 1
            holds = any(epoch.first_index <= k <= max(epoch.last_index, epoch.first_index) for k in known)
            if epoch.closed and not holds and not last:
                epoch.listing.unlink(missing_ok=True)
            else:
                keep.append(epoch)
        self._epochs = keep
