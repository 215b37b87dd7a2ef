"""The only module that talks to ffmpeg: find it, probe inputs, decode audio, cut clips.

ffmpeg is taken from the system when present, else from the static binary that the
``imageio-ffmpeg`` wheel ships.  That wheel has no ffprobe, so probing falls back to reading
``ffmpeg -i``'s stream listing.
"""

from __future__ import annotations

import functools
import logging
import os
import re
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import ffmpeg
import numpy as np

from pipeline.records import SAMPLE_RATE, MediaInfo

log = logging.getLogger(__name__)

MEDIA_SUFFIXES = {
    ".mp4",
    ".flv",
    ".m4a",
    ".mp3",
    ".wav",
    ".ts",
    ".webm",
    ".mkv",
    ".mov",
    ".aac",
    ".ogg",
    ".opus",
    ".flac",
    ".m4v",
    ".avi",
    ".wma",
}


class MediaError(RuntimeError):
    """An input that cannot be used; the message is a one-line reason for the user."""


@functools.cache
def find_ffmpeg(preferred: str = "auto") -> str:
    """Path of the ffmpeg binary: ``preferred`` if given, the system's, else imageio-ffmpeg's."""
    if preferred != "auto":
        if not (Path(preferred).is_file() or shutil.which(preferred)):
            raise MediaError(f"ffmpeg not found at {preferred!r} (media.ffmpeg)")
        return preferred
    system = shutil.which("ffmpeg")
    if system:
        return system
    try:
        import imageio_ffmpeg
    except ImportError as exc:  # pragma: no cover - it is a dependency
        raise MediaError("ffmpeg not found: install ffmpeg or the imageio-ffmpeg package") from exc
    return imageio_ffmpeg.get_ffmpeg_exe()


def find_ffprobe(ffmpeg_exe: str) -> str | None:
    beside = Path(ffmpeg_exe).with_name("ffprobe")
    return str(beside) if beside.is_file() else shutil.which("ffprobe")


def _reason(stderr: str) -> str:
    """The most telling line of ffmpeg's complaint."""
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    for ln in reversed(lines):
        if any(k in ln for k in ("Invalid data", "moov atom", "could not find", "Error", "error")):
            return re.sub(r"^\[[^\]]+\]\s*", "", ln)[:200]
    return (lines[-1] if lines else "ffmpeg failed")[:200]


def _probe_with_ffprobe(ffprobe: str, path: str) -> MediaInfo:
    try:
        info = ffmpeg.probe(path, cmd=ffprobe)
    except ffmpeg.Error as exc:
        raise MediaError(_describe_failure(exc.stderr.decode("utf-8", "replace"))) from None
    streams = info.get("streams", [])
    fmt = info.get("format", {})
    audio = next((s for s in streams if s.get("codec_type") == "audio"), None)
    video = next(
        (
            s
            for s in streams
            if s.get("codec_type") == "video" and not s.get("disposition", {}).get("attached_pic")
        ),
        None,
    )
    return MediaInfo(
        path=path,
        duration=float(fmt.get("duration") or 0.0),
        has_audio=audio is not None,
        has_video=video is not None,
        format_name=fmt.get("format_name", ""),
        audio_codec=(audio or {}).get("codec_name", ""),
        video_codec=(video or {}).get("codec_name", ""),
    )


_DURATION = re.compile(r"Duration:\s*(\d+):(\d+):(\d+(?:\.\d+)?)")
_STREAM = re.compile(r"Stream #\d+:\d+.*?: (Audio|Video): (\w+)(.*)")
_INPUT = re.compile(r"Input #0, ([^,]+(?:,[^,]+)*?), from")


def _probe_with_ffmpeg(ffmpeg_exe: str, path: str) -> MediaInfo:
    proc = subprocess.run(
        [ffmpeg_exe, "-hide_banner", "-nostdin", "-i", path],
        capture_output=True,
        text=True,
        errors="replace",
        timeout=60,
    )
    err = proc.stderr
    if "Input #0" not in err:
        raise MediaError(_describe_failure(err))
    m = _DURATION.search(err)
    duration = int(m[1]) * 3600 + int(m[2]) * 60 + float(m[3]) if m else 0.0
    audio = video = ""
    for kind, codec, rest in _STREAM.findall(err):
        if kind == "Audio" and not audio:
            audio = codec
        elif kind == "Video" and not video and "attached pic" not in rest:
            video = codec
    fm = _INPUT.search(err)
    return MediaInfo(
        path=path,
        duration=duration,
        has_audio=bool(audio),
        has_video=bool(video),
        format_name=fm[1] if fm else "",
        audio_codec=audio,
        video_codec=video,
    )


def _describe_failure(stderr: str) -> str:
    if "Invalid data found" in stderr:
        return "not a media file or corrupt (ffmpeg: Invalid data found when processing input)"
    if "moov atom not found" in stderr:
        return "corrupt or truncated media (ffmpeg: moov atom not found)"
    return f"cannot read media ({_reason(stderr)})"


def probe(path: str | Path, ffmpeg_exe: str | None = None) -> MediaInfo:
    """Describe a media file, or raise MediaError with a one-line reason."""
    path = str(path)
    if not os.path.exists(path):
        raise MediaError("file not found")
    if os.path.isdir(path):
        raise MediaError("is a folder, not a media file")
    if os.path.getsize(path) == 0:
        raise MediaError("empty file (0 bytes)")
    exe = ffmpeg_exe or find_ffmpeg()
    ffprobe = find_ffprobe(exe)
    info = _probe_with_ffprobe(ffprobe, path) if ffprobe else _probe_with_ffmpeg(exe, path)
    if not info.has_audio:
        what = "video without an audio track" if info.has_video else "no audio stream"
        raise MediaError(f"{what}: nothing to transcribe")
    return info


def _drain(pipe, sink: list[bytes]) -> None:
    for chunk in iter(lambda: pipe.read(4096), b""):
        sink.append(chunk)


def decode_blocks(
    path: str,
    block_seconds: float = 30.0,
    ffmpeg_exe: str | None = None,
    realtime: bool = False,
    expected: float = 0.0,
) -> Iterator[np.ndarray]:
    """Decode any input ffmpeg reads to 16 kHz mono float32, yielded in blocks.

    Memory stays bounded by one block however long the input is.  Raises MediaError when
    ffmpeg fails, or when it stops well short of the ``expected`` duration (a truncated file:
    ffmpeg then exits 0), after yielding whatever it decoded.
    """
    exe = ffmpeg_exe or find_ffmpeg()
    stream = ffmpeg.input(path, re=None) if realtime else ffmpeg.input(path)
    stream = stream.output(
        "pipe:", format="s16le", acodec="pcm_s16le", ac=1, ar=SAMPLE_RATE, vn=None, sn=None, dn=None
    )
    args = [exe, "-hide_banner", "-nostdin", "-loglevel", "error", *stream.get_args()]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    errors: list[bytes] = []
    drainer = threading.Thread(target=_drain, args=(proc.stderr, errors), daemon=True)
    drainer.start()
    block_bytes = int(block_seconds * SAMPLE_RATE) * 2
    decoded = 0
    try:
        while True:
            raw = proc.stdout.read(block_bytes)
            if not raw:
                break
            raw = raw[: len(raw) // 2 * 2]
            decoded += len(raw) // 2
            yield np.frombuffer(raw, dtype=np.int16).astype(np.float32) / 32768.0
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        drainer.join(timeout=5)
    stderr = b"".join(errors).decode("utf-8", "replace")
    if proc.returncode != 0:
        raise MediaError(_describe_failure(stderr))
    seconds = decoded / SAMPLE_RATE
    if expected > 0 and seconds < 0.9 * expected - 1.0:
        raise MediaError(
            f"truncated or corrupt media: decoded {seconds:.1f} s of {expected:.1f} s"
            + (f" (ffmpeg: {_reason(stderr)})" if stderr.strip() else "")
        )


def decode_audio(path: str, ffmpeg_exe: str | None = None, expected: float = 0.0) -> np.ndarray:
    """The whole input as one 16 kHz mono float32 array (for short files and tests)."""
    blocks = list(decode_blocks(path, ffmpeg_exe=ffmpeg_exe, expected=expected))
    return np.concatenate(blocks) if blocks else np.zeros(0, dtype=np.float32)


def cut_clip(
    src: str, start: float, end: float, dst: str | Path, *, video: bool, ffmpeg_exe: str | None = None
) -> Path:
    """Write the media between ``start`` and ``end`` (seconds) to ``dst``, re-encoded so the
    clip starts exactly at ``start``: mp4 (H.264 + AAC) with video, m4a (AAC) without."""
    exe = ffmpeg_exe or find_ffmpeg()
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(dst.stem + ".part" + dst.suffix)
    inp = ffmpeg.input(src, ss=max(0.0, start), t=max(0.1, end - start))
    opts: dict = {"acodec": "aac", "audio_bitrate": "64k", "movflags": "+faststart"}
    if video:
        opts.update(vcodec="libx264", preset="veryfast", crf=28, pix_fmt="yuv420p")
        streams = [inp.video, inp.audio]
    else:
        opts["vn"] = None
        streams = [inp.audio]
    out = ffmpeg.output(*streams, str(tmp), **opts).overwrite_output()
    args = [exe, "-hide_banner", "-nostdin", "-loglevel", "error", *out.get_args()]
    proc = subprocess.run(args, capture_output=True, text=True, errors="replace", timeout=300)
    if proc.returncode != 0:
        tmp.unlink(missing_ok=True)
        raise MediaError(f"clip failed: {_reason(proc.stderr)}")
    tmp.replace(dst)
    return dst
