"""Fault injection on Ray: an ASR actor killed mid-batch, a segment that kills its worker every
time, a decoder that crashes.  The final records must equal a clean run's, apart from the
failures recorded in failed.jsonl and the failed table."""

from __future__ import annotations

import pytest
from compare import SMALL_WINDOWS, assert_no_duplicates, failures, records, run_with_fault

from pipeline.cli import main

pytestmark = pytest.mark.slow


def test_asr_actor_killed_during_a_batch(fault_inputs, fault_clean_ray, tmp_path, ray_session, monkeypatch):
    import ray

    from pipeline.config import load_config

    monkeypatch.setenv("LIVEMOD_FAULTS", "asr.sleep=1.0")  # windows long enough to be killed in
    config = load_config(overrides=["asr.window_s=5", "ray.max_inflight_windows=2"])
    out = tmp_path / "out"
    batch, killed = run_with_fault(
        config,
        out,
        fault_inputs,
        # as an OOM kill or a segfault would; any ASR actor may be the one
        lambda b: (lambda i: ray.kill(b.asr.actors[i], no_restart=False), set(range(len(b.asr.actors)))),
    )
    assert killed and killed[0] >= 1, "the actor was not killed while it had work"
    assert batch.retries >= 1  # its in-flight work was tried again on the restarted actor
    assert failures(out) == []
    assert records(out) == records(fault_clean_ray)
    assert_no_duplicates(out)


def test_poison_segment_that_kills_its_worker(
    fault_inputs, fault_clean_ray, tmp_path, ray_session, monkeypatch, capsys
):
    """The window holding utterance 1 of room_b kills the ASR process every time: after
    ray.max_tries tries it is recorded, the actor is back, and the rest goes on."""
    monkeypatch.setenv("LIVEMOD_FAULTS", "asr.exit=room_b:1")
    monkeypatch.setenv("LIVEMOD_FAULTS_STATE", str(tmp_path))
    out = tmp_path / "out"
    assert main(["batch", *fault_inputs, "--out", str(out), "--quiet", "--no-clips", *SMALL_WINDOWS]) == 1
    assert "1 segment(s) failed" in capsys.readouterr().out
    (f,) = failures(out)
    assert f["stream_id"].startswith("room_b") and f["tries"] == 3
    # three real tries, each on a live worker that it killed (not calls bounced off a dead one)
    assert (tmp_path / "asr.exits").read_text().splitlines() == ["room_b:1"] * 3
    assert "died" in f["reason"].lower() or "actor" in f["reason"].lower(), f["reason"]
    mine, theirs = records(out, skip=[f]), records(fault_clean_ray, skip=[f])
    # clips were not cut in this run: compare everything else
    assert [v[:-1] for v in mine["violations"]] == [v[:-1] for v in theirs["violations"]]
    assert mine["transcripts"] == theirs["transcripts"] and mine["streams"] == theirs["streams"]
    assert len(mine["transcripts"]) == len(records(fault_clean_ray)["transcripts"]) - 1
    assert_no_duplicates(out)


def test_decoder_crash_every_time(fault_inputs, fault_clean_ray, tmp_path, ray_session, monkeypatch, capsys):
    """Preparing room_a crashes at its window with utterance 2, every try: the windows before it
    stand, the rest of the stream is recorded as failed, the other input is untouched.  Then,
    the crash gone, the same command on Ray resumes: room_b is not redone, room_a's first two
    windows come from the manifest, and the records are the clean run's."""
    monkeypatch.setenv("LIVEMOD_FAULTS", "prepare.raise=room_a:2")
    out = tmp_path / "out"
    assert main(["batch", *fault_inputs, "--out", str(out), "--quiet", "--no-clips", *SMALL_WINDOWS]) == 1
    (f,) = failures(out)
    assert f["stream_id"].startswith("room_a") and f["tries"] == 3 and f["reason"].startswith("decoding")
    assert f["end"] == pytest.approx(15.2, abs=0.3)
    mine, theirs = records(out, skip=[f]), records(fault_clean_ray, skip=[f])
    assert [v[:-1] for v in mine["violations"]] == [v[:-1] for v in theirs["violations"]]
    assert mine["transcripts"] == theirs["transcripts"]

    monkeypatch.delenv("LIVEMOD_FAULTS")
    capsys.readouterr()
    assert main(["batch", *fault_inputs, "--out", str(out), "--quiet", "--no-clips", *SMALL_WINDOWS]) == 0
    assert "1 finished stream(s) and 2 window(s) taken from an earlier run" in capsys.readouterr().err
    assert failures(out) == []
    mine, theirs = records(out), records(fault_clean_ray)
    assert [v[:-1] for v in mine["violations"]] == [v[:-1] for v in theirs["violations"]]
    assert mine["transcripts"] == theirs["transcripts"] and mine["db_utterances"] == theirs["db_utterances"]
    assert_no_duplicates(out)


def test_classifier_actor_crash_is_retried(fault_inputs, fault_clean_ray, tmp_path, ray_session, monkeypatch):
    """The classifier's process dies once, on a window of room_a: Ray restarts it, the window is
    tried again, and the records equal the clean run's with nothing failed."""
    monkeypatch.setenv("LIVEMOD_FAULTS", "classify.exit_once=room_a:1")
    monkeypatch.setenv("LIVEMOD_FAULTS_STATE", str(tmp_path))
    out = tmp_path / "out"
    assert main(["batch", *fault_inputs, "--out", str(out), "--quiet", *SMALL_WINDOWS]) == 0
    assert (tmp_path / "classify.room_a_1.done").exists()  # it did die
    assert failures(out) == []
    assert records(out) == records(fault_clean_ray)
    assert_no_duplicates(out)
