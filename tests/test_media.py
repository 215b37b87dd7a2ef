"""Real ffmpeg on the committed demo media, every container the analysts receive, and bad inputs."""

from pathlib import Path

import pytest
from conftest import CLIP, STREAM, silent_video, transcode

from pipeline.media import MediaError, cut_clip, decode_audio, decode_blocks, probe
from pipeline.records import SAMPLE_RATE


def test_probe_demo_stream_has_audio_and_video():
    info = probe(STREAM)
    assert info.has_audio and info.has_video
    assert 185 < info.duration < 195


def test_decode_is_16k_mono_and_as_long_as_the_media():
    audio = decode_audio(str(CLIP))
    assert audio.dtype.name == "float32" and audio.ndim == 1
    assert abs(len(audio) / SAMPLE_RATE - probe(CLIP).duration) < 0.1
    assert 0.01 < float(abs(audio).max()) <= 1.0


def test_blocks_join_to_the_whole():
    blocks = list(decode_blocks(str(CLIP), block_seconds=2.0))
    assert len(blocks) >= 7
    assert all(len(b) == 2 * SAMPLE_RATE for b in blocks[:-1])
    assert sum(map(len, blocks)) == len(decode_audio(str(CLIP)))


@pytest.mark.parametrize(
    "suffix, args",
    [
        (".flv", ["-c:v", "flv", "-c:a", "aac"]),
        (".m4a", ["-vn", "-c:a", "aac"]),
        (".mp3", ["-vn", "-c:a", "libmp3lame"]),
        (".wav", ["-vn"]),
        (".ts", ["-c:v", "libx264", "-c:a", "aac"]),
        (".webm", ["-c:v", "libvpx", "-c:a", "libopus", "-b:v", "100k"]),
    ],
)
def test_every_container_decodes(tmp_path: Path, ffmpeg_exe, suffix, args):
    media = transcode(ffmpeg_exe, CLIP, tmp_path / f"clip{suffix}", *args)
    info = probe(media)
    assert info.has_audio
    assert info.has_video == (suffix in (".flv", ".ts", ".webm"))
    assert abs(len(decode_audio(str(media))) / SAMPLE_RATE - 15.2) < 0.3


def test_bad_inputs_get_one_line_reasons(tmp_path: Path, ffmpeg_exe):
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    text = tmp_path / "notes.txt"
    text.write_text("这不是视频 just notes\n" * 20, encoding="utf-8")
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(CLIP.read_bytes()[:20_000])  # truncated: the moov atom is gone
    garbage = tmp_path / "garbage.flv"
    garbage.write_bytes(bytes(range(256)) * 100)
    silent = silent_video(ffmpeg_exe, tmp_path / "silent.mp4")
    cases = {
        empty: "empty file",
        text: "not a media file",
        garbage: "not a media file",
        silent: "video without an audio track",
        tmp_path / "missing.wav": "file not found",
    }
    for path, reason in cases.items():
        with pytest.raises(MediaError) as err:
            probe(path)
        assert reason in str(err.value) and "\n" not in str(err.value), path
    # a truncated mp4 still probes (its index is at the front) but decodes short
    with pytest.raises(MediaError, match=r"truncated or corrupt media: decoded \d+\.\d s of 15\.2 s") as err:
        decode_audio(str(corrupt), expected=probe(corrupt).duration)
    assert "\n" not in str(err.value)


def test_cut_clip_keeps_video_and_starts_where_asked(tmp_path: Path):
    out = cut_clip(str(STREAM), 20.0, 30.0, tmp_path / "c.mp4", video=True)
    info = probe(out)
    assert info.has_video and info.has_audio
    assert abs(info.duration - 10.0) < 0.3
    # the clip's audio is the stream's audio from 20 s on
    import numpy as np

    clip = decode_audio(str(out))[: 5 * SAMPLE_RATE]
    ref = decode_audio(str(STREAM))[20 * SAMPLE_RATE : 25 * SAMPLE_RATE]
    assert np.corrcoef(clip, ref)[0, 1] > 0.9
    audio_only = cut_clip(str(STREAM), 0.0, 4.0, tmp_path / "c.m4a", video=False)
    assert not probe(audio_only).has_video
