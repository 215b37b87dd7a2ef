"""The run manifest on its own: what it keeps, and when it forgets."""

from __future__ import annotations

import os
import shutil

from conftest import CLIP

from pipeline.config import load_config
from pipeline.manifest import Manifest
from pipeline.records import MediaInfo, Stream, StreamResult, Transcript, Utterance


def _window(stream_id: str, i: int) -> list[Transcript]:
    return [Transcript(Utterance(stream_id, i, 5.0 * i, 5.0 * i + 3.2), f"第{i}句", asr_model="m")]


def test_finished_and_partial_inputs_survive_a_restart(tmp_path):
    src = tmp_path / "a.mp4"
    shutil.copy(CLIP, src)
    config = load_config()
    stream = Stream("a-1234", str(src), MediaInfo(str(src), 15.2, True, True))
    m = Manifest(tmp_path, config, "v1")
    entry = m.open(str(src))
    assert not entry.done and not entry.windows
    m.set_stream(str(src), stream)
    m.add_window(str(src), 1, "a-1234:00000", _window("a-1234", 0), [])
    m.close()  # killed here: one window of two done

    m = Manifest(tmp_path, config, "v1")
    entry = m.open(str(src))
    assert not entry.done and entry.stream == stream
    assert entry.cached(1, "a-1234:00000") == (_window("a-1234", 0), [])
    assert entry.cached(1, "a-1234:00003") is None  # not the same window: redo it
    assert entry.cached(2, "a-1234:00001") is None
    m.add_window(str(src), 2, "a-1234:00001", _window("a-1234", 1), [])
    m.finish(str(src), StreamResult(str(src), stream=stream))
    m.close()

    m = Manifest(tmp_path, config, "v1")
    entry = m.open(str(src))
    assert entry.done and m.reused_streams == 1
    result = entry.result()
    assert [t.text for t in result.transcripts] == ["第0句", "第1句"] and result.stream == stream
    m.close()


def test_a_changed_file_or_setting_starts_over(tmp_path):
    src = tmp_path / "a.mp4"
    shutil.copy(CLIP, src)
    config = load_config()
    stream = Stream("a-1234", str(src), MediaInfo(str(src), 15.2, True, True))

    def finish(m: Manifest) -> None:
        m.open(str(src))
        m.set_stream(str(src), stream)
        m.add_window(str(src), 1, "a-1234:00000", _window("a-1234", 0), [])
        m.finish(str(src), StreamResult(str(src), stream=stream))

    m = Manifest(tmp_path, config, "v1")
    finish(m)
    assert Manifest(tmp_path, config, "v1").open(str(src)).done
    # settings that do not change results (how the work is spread) keep the manifest valid
    spread = load_config(
        overrides=["ray.prepare_workers=3", "asr.workers=4", "asr.cpu_threads=1", "metrics.port=9100"]
    )
    assert Manifest(tmp_path, spread, "v1").open(str(src)).done
    # a setting that changes results, or another classifier version: start over
    finish(Manifest(tmp_path, config, "v1"))
    assert not Manifest(tmp_path, load_config(overrides=["asr.beam_size=2"]), "v1").open(str(src)).windows
    finish(Manifest(tmp_path, config, "v1"))
    assert not Manifest(tmp_path, config, "v2").open(str(src)).done
    # the file was replaced
    finish(Manifest(tmp_path, config, "v1"))
    st = os.stat(src)
    os.utime(src, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    entry = Manifest(tmp_path, config, "v1").open(str(src))
    assert not entry.done and not entry.windows


def test_a_stream_with_failed_segments_is_not_finished(tmp_path):
    from pipeline.records import SegmentFailure

    src = tmp_path / "a.mp4"
    shutil.copy(CLIP, src)
    stream = Stream("a-1234", str(src), MediaInfo(str(src), 15.2, True, True))
    m = Manifest(tmp_path, load_config(), "v1")
    m.open(str(src))
    m.set_stream(str(src), stream)
    result = StreamResult(str(src), stream=stream)
    result.failures.append(SegmentFailure("a-1234", str(src), 2, 5.0, 8.2, "boom", 3))
    m.finish(str(src), result)
    assert not Manifest(tmp_path, load_config(), "v1").open(str(src)).done


def test_unknown_inputs_are_not_recorded(tmp_path):
    m = Manifest(tmp_path, load_config(), "v1")
    entry = m.open(str(tmp_path / "missing.mp4"))
    assert entry.fingerprint is None and not entry.done
    m.add_window(str(tmp_path / "missing.mp4"), 1, "x:00000", [], [])
    assert m.conn.execute("SELECT COUNT(*) FROM windows").fetchone()[0] == 0
