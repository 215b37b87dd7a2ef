"""Resumable batch runs and poison segments, without Ray (fast enough for every CI run)."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from compare import ROOT, SMALL_WINDOWS, assert_no_duplicates, failures, records

from pipeline.cli import main

pytestmark = pytest.mark.slow


def _windows_done(manifest: Path, source: str) -> int:
    if not manifest.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{manifest}?mode=ro", uri=True, timeout=1) as db:
            return db.execute("SELECT COUNT(*) FROM windows WHERE source=?", (source,)).fetchone()[0]
    except sqlite3.Error:
        return 0


def test_killed_run_resumes_to_the_clean_records(fault_inputs, fault_clean, tmp_path):
    """SIGKILL a batch run in the middle of its second stream, start it again with the same
    --out: the first stream is not redone, the second redoes only its unfinished windows, and
    the outputs equal a clean run's (no loss, no duplicates)."""
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "pipeline", "batch", *fault_inputs, "--out", str(out), "--no-ray", "--quiet"]
    cmd += SMALL_WINDOWS
    env = {**os.environ, "LIVEMOD_FAULTS": "asr.sleep=1.5"}  # slow windows, so the kill lands mid-stream
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 180
    while _windows_done(out / "manifest.db", fault_inputs[1]) < 1:
        assert proc.poll() is None, proc.stderr.read().decode()
        assert time.monotonic() < deadline, "the run never reached its second stream"
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done_before = _windows_done(out / "manifest.db", fault_inputs[1])
    assert 1 <= done_before < 3

    again = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert f"1 finished stream(s) and {done_before} window(s) taken from an earlier run" in again.stderr
    assert records(out) == records(fault_clean)
    assert_no_duplicates(out)


def test_poison_segment_is_recorded_and_the_stream_goes_on(
    fault_inputs, fault_clean, tmp_path, monkeypatch, capsys
):
    """A window that raises every time is tried ray.max_tries times, recorded in failed.jsonl
    and the database with its reason, and every other record equals the clean run's."""
    monkeypatch.setenv("LIVEMOD_FAULTS", "asr.raise=room_b:1")
    out = tmp_path / "out"
    code = main(["batch", *fault_inputs, "--out", str(out), "--no-ray", "--quiet", *SMALL_WINDOWS])
    assert code == 1  # something was not moderated: say so
    printed = capsys.readouterr().out
    assert "1 segment(s) failed" in printed
    (f,) = failures(out)
    assert f["stream_id"].startswith("room_b") and f["tries"] == 3 and "injected fault" in f["reason"]
    assert f["start"] < f["end"]
    with sqlite3.connect(out / "moderation.db") as db:
        rows = db.execute("SELECT stream_id, start_s, end_s, tries, reason FROM failed").fetchall()
        status = dict(db.execute("SELECT source, status FROM inputs").fetchall())
    assert rows == [(f["stream_id"], f["start"], f["end"], 3, f["reason"])]
    assert status == {fault_inputs[0]: "done", fault_inputs[1]: "partial"}
    # the rest of room_b was moderated: everything outside the failed window is as in a clean run
    assert records(out, skip=[f]) == records(fault_clean, skip=[f])
    assert len(records(out)["transcripts"]) < len(records(fault_clean)["transcripts"])

    # the poison gone (a fixed model, say), a new run retries only that window
    monkeypatch.delenv("LIVEMOD_FAULTS")
    assert main(["batch", *fault_inputs, "--out", str(out), "--no-ray", "--quiet", *SMALL_WINDOWS]) == 0
    assert records(out) == records(fault_clean)
    assert failures(out) == []
    assert "1 finished stream(s) and 2 window(s)" in capsys.readouterr().err
