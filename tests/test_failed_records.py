"""Failed segments in the database and failed.jsonl: replaced per stream, never duplicated."""

from __future__ import annotations

from pipeline.config import load_config
from pipeline.output import OutputWriter
from pipeline.records import MediaInfo, SegmentFailure, Stream, StreamResult
from pipeline.sinks import Database


def test_write_failures_replaces_per_stream(tmp_path):
    db = Database(tmp_path / "m.db")
    a = [SegmentFailure("s1", "a.mp4", 2, 5.12345, 9.8765, "boom", 3)]
    db.write_failures("s1", a)
    db.write_failures("s1", a)  # a re-run: no duplicate
    db.write_failures("s2", [SegmentFailure("s2", "b.mp4", 1, 0.0, 4.0, "x", 3)])
    rows = db.rows(
        "SELECT stream_id, window_index, start_s, end_s, reason, tries FROM failed ORDER BY stream_id"
    )
    assert [tuple(r.values()) for r in rows] == [
        ("s1", 2, 5.123, 9.877, "boom", 3),
        ("s2", 1, 0.0, 4.0, "x", 3),
    ]
    db.write_failures("s1", [])  # fixed on a later run
    assert db.count("failed") == 1
    db.close()


def test_a_partial_stream_is_written_with_its_failures(tmp_path):
    config = load_config(overrides=["clips.enabled=false", "output.report=false"])
    stream = Stream("s1", "a.mp4", MediaInfo("a.mp4", 15.2, True, False))
    result = StreamResult("a.mp4", stream=stream)
    result.failures.append(SegmentFailure("s1", "a.mp4", 2, 5.0, 9.0, "RuntimeError: boom", 3))
    writer = OutputWriter(tmp_path, config)
    writer.submit(result)
    writer.close()
    lines = (tmp_path / "failed.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(lines) == 1 and '"tries":3' in lines[0] and '"window":2' in lines[0]
    db = Database(tmp_path / "moderation.db")
    (row,) = db.rows("SELECT status, error FROM inputs")
    assert row["status"] == "partial" and "1 segment(s) failed" in row["error"]
    db.close()
