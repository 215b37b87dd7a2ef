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


# -- review console: a real moderation database (batch run on the demo clip) plus hostile text --

REVIEW_USERS = {"lena": ("lead", "lead-password-1"), "mo": ("moderator", "moderator-password-1")}
HOSTILE_TEXTS = (
    '<script>alert("xss")</script>加我薇信私聊，价格更低',
    '"><img src=x onerror=alert(1)>想要的家人打我电话13812345678，身份证号110101199003071234发我',
)


def _add_user(db: Path, name: str, role: str, password: str, monkeypatch) -> None:
    import io

    from pipeline.cli import main

    monkeypatch.setattr("sys.stdin", io.StringIO(password + "\n"))
    assert main(["user", "add", name, "--role", role, "--db", str(db), "--password-stdin"]) == 0


@pytest.fixture(scope="session")
def review_base(tmp_path_factory, config) -> Path:
    """``livemod batch`` on the demo clip, then a stream of hostile and personal-data talk
    classified by the real classifier and written by the real database writer."""
    from pipeline.cli import main
    from pipeline.records import Transcript, Utterance
    from pipeline.sinks import Database
    from pipeline.stages import ClassifyStage

    out = tmp_path_factory.mktemp("review") / "out"
    assert main(["batch", str(CLIP), "--out", str(out), "--no-ray", "--quiet"]) == 0
    clf = ClassifyStage(config)
    clf.setup()
    transcripts = [
        Transcript(Utterance("hostile", i, 5.0 * i, 5.0 * i + 4.0), text, asr_model="test")
        for i, text in enumerate(HOSTILE_TEXTS)
    ]
    violations = clf.process(transcripts, source="hostile.flv")
    assert {v.label.category for v in violations} >= {"fraud"}
    db = Database(out / "moderation.db")
    db.upsert_stream("hostile", "hostile.flv", 10.0, False, "test", clf.version)
    db.add(transcripts, violations)
    db.close()
    mp = pytest.MonkeyPatch()
    for name, (role, password) in REVIEW_USERS.items():
        _add_user(out / "moderation.db", name, role, password, mp)
    mp.undo()
    return out


@pytest.fixture
def review_out(review_base, tmp_path) -> Path:
    """A private copy of the review database and clips, so decisions do not leak between tests."""
    import shutil

    dst = tmp_path / "out"
    shutil.copytree(review_base, dst)
    return dst


# -- fault-injection tests (test_resume, test_faults, test_cluster): one clean reference run --


@pytest.fixture(scope="session")
def fault_inputs(tmp_path_factory) -> list[str]:
    """The demo clip under two names: two streams with their own ids."""
    from compare import two_clips

    return two_clips(tmp_path_factory.mktemp("fault-inputs"))


@pytest.fixture(scope="session")
def fault_clean_ray(fault_inputs, tmp_path_factory, ray_session) -> Path:
    """The same clean run on the Ray runner, which the Ray fault tests compare with.  On some
    CPUs Whisper in a Ray worker writes a character differently from Whisper in this process
    (助持码 / 助持马 in the demo clip, seen on an AMD EPYC machine), so each runner is held to
    its own clean records."""
    from compare import clean_run

    return clean_run(fault_inputs, tmp_path_factory.mktemp("fault-clean-ray"))


@pytest.fixture(scope="session")
def fault_clean(fault_inputs, tmp_path_factory) -> Path:
    """What a run with nothing going wrong leaves, in this process, without Ray (the tests of
    runs without Ray compare with it; the Ray runner's is ``fault_clean_ray``)."""
    from compare import clean_run

    return clean_run(fault_inputs, tmp_path_factory.mktemp("fault-clean"), "--no-ray")
