"""Shared fixtures: the committed demo media, real ffmpeg, real Whisper, one Ray instance."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from pipeline.config import load_config
from pipeline.media import find_ffmpeg

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "assets" / "demo"
STREAM = DEMO / "stream.mp4"
CLIP = DEMO / "clip.mp4"


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


@pytest.fixture(scope="session")
def ffmpeg_exe() -> str:
    return find_ffmpeg()


@pytest.fixture(scope="session")
def config():
    return load_config()


@pytest.fixture(scope="session")
def clip_truth() -> list[dict]:
    return read_jsonl(DEMO / "clip_truth.jsonl")


@pytest.fixture(scope="session")
def stream_truth() -> list[dict]:
    return read_jsonl(DEMO / "truth.jsonl")


@pytest.fixture(scope="session")
def asr_stage(config):
    from pipeline.stages import AsrStage

    stage = AsrStage(config.asr)
    stage.setup()
    return stage


@pytest.fixture(scope="session")
def ray_session():
    """One local Ray instance for every test that needs it."""
    import ray

    from pipeline.runners.ray_batch import init_ray

    init_ray(load_config(overrides=["ray.num_cpus=2"]))
    yield ray
    ray.shutdown()


def transcode(ffmpeg_exe: str, src: Path, dst: Path, *args: str) -> Path:
    subprocess.run(
        [ffmpeg_exe, "-y", "-hide_banner", "-loglevel", "error", "-i", str(src), *args, str(dst)], check=True
    )
    return dst


def silent_video(ffmpeg_exe: str, dst: Path, seconds: float = 2.0) -> Path:
    subprocess.run(
        [
            ffmpeg_exe,
            "-y",
            "-hide_banner",
            "-loglevel",
            "error",
            "-f",
            "lavfi",
            "-i",
            f"testsrc=size=160x120:rate=10:duration={seconds}",
            "-c:v",
            "libx264",
            str(dst),
        ],
        check=True,
    )
    return dst
