"""Inputs given as fsspec URLs: copied once to a local cache, clear errors when unreachable."""

from __future__ import annotations

from pathlib import Path

import fsspec
import pytest
from conftest import CLIP, read_jsonl

from pipeline.cli import main
from pipeline.media import MediaError
from pipeline.storage import is_fsspec_url, local_path


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("LIVEMOD_INPUT_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_which_sources_go_through_fsspec():
    assert is_fsspec_url("s3://bucket/rooms/a.mp4") and is_fsspec_url("file:///data/a.mp4")
    assert is_fsspec_url("memory://x/a.mp4") and is_fsspec_url("gs://b/a.flv")
    for direct in ("assets/demo/clip.mp4", "/abs/a.mp4", "https://cdn/a.mp4", "rtmp://h/live/1"):
        assert not is_fsspec_url(direct)
    assert local_path("assets/demo/clip.mp4") == "assets/demo/clip.mp4"


def test_a_url_is_copied_once_into_the_cache(cache):
    fs = fsspec.filesystem("memory")
    fs.pipe("/rooms/room1.mp4", CLIP.read_bytes()[:50_000])
    first = local_path("memory://rooms/room1.mp4")
    assert Path(first).read_bytes() == CLIP.read_bytes()[:50_000]
    assert Path(first).is_relative_to(cache) and Path(first).name == "room1.mp4"
    assert local_path("memory://rooms/room1.mp4") == first
    fs.rm("/rooms/room1.mp4")


def test_unreachable_urls_say_why_in_one_line(tmp_path):
    with pytest.raises(MediaError, match=r"cannot read file://.*: not found from "):
        local_path(f"file://{tmp_path}/nope.mp4")
    with pytest.raises(MediaError, match=r"cannot read nosuchproto://a/b.mp4: "):
        local_path("nosuchproto://a/b.mp4")
    with pytest.raises(MediaError) as err:
        local_path(f"file://{tmp_path}")
    assert "folder" in str(err.value) and "\n" not in str(err.value)


@pytest.mark.slow
def test_batch_on_a_url_gives_the_records_of_the_path(tmp_path):
    url = f"file://{CLIP.resolve()}"
    out = tmp_path / "out"
    assert main(["batch", url, "--out", str(out), "--no-ray", "--quiet"]) == 0
    violations = read_jsonl(out / "violations.jsonl")
    assert violations and all(v["source"] == url for v in violations)
    assert {v["stream_id"] for v in violations} == {"clip-c96510dd"}  # as for the plain path
    assert all((out / v["clip"]).is_file() for v in violations)
    missing = f"file://{tmp_path}/gone.mp4"
    assert main(["batch", missing, "--out", str(out), "--no-ray", "--quiet"]) == 1
