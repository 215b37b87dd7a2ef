"""What the fault-injection tests compare: the records a run leaves in its output folder."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CLIP = ROOT / "assets" / "demo" / "clip.mp4"

# windows of 5 s: the 15 s demo clip becomes three windows, so a run can die between them
SMALL_WINDOWS = ["--set", "asr.window_s=5"]


def two_clips(folder: Path) -> list[str]:
    """Two inputs (the demo clip under two names: two streams with their own ids)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in ("room_a.mp4", "room_b.mp4"):
        shutil.copy(CLIP, folder / name)
        paths.append(str(folder / name))
    return paths


def clean_run(inputs: list[str], out: Path, *args: str) -> Path:
    """A batch run of ``inputs`` into ``out`` with nothing going wrong, in small windows: what
    a fault test's records must equal.  ``args``: the runner's own (``--no-ray``, a cluster's
    ``--set ray.address=...``), since each runner is held to its own clean run (Whisper in a Ray
    worker can write a character differently from Whisper in this process on some CPUs)."""
    from pipeline.cli import main

    assert main(["batch", *inputs, "--out", str(out), "--quiet", *SMALL_WINDOWS, *args]) == 0
    return out


def _jsonl(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]


def failures(out: Path) -> list[dict]:
    return _jsonl(out / "failed.jsonl")


def records(out: Path, skip: list[dict] | None = None) -> dict:
    """Violations, transcripts and database rows, minus those inside the ``skip`` failures."""

    def kept(stream_id: str, start: float) -> bool:
        return not any(f["stream_id"] == stream_id and f["start"] <= start <= f["end"] for f in skip or [])

    violations = sorted(
        (
            v["id"],
            v["stream_id"],
            v["utterance_id"],
            v["category"],
            v["subcategory"],
            v["start"],
            v["end"],
            v["text"],
            v["clip"],
        )
        for v in _jsonl(out / "violations.jsonl")
        if kept(v["stream_id"], v["start"])
    )
    transcripts = sorted(
        (t["id"], t["start"], t["end"], t["text"])
        for f in sorted((out / "transcripts").glob("*.jsonl"))
        for t in _jsonl(f)
        if kept(t["stream_id"], t["start"])
    )
    with sqlite3.connect(out / "moderation.db") as db:
        db_violations = sorted(
            r
            for r in db.execute(
                "SELECT id, stream_id, category, subcategory, start_s, end_s, clip FROM violations"
            )
            if kept(r[1], r[4])
        )
        db_utterances = sorted(
            r
            for r in db.execute("SELECT id, stream_id, start_s, end_s, text FROM utterances")
            if kept(r[1], r[2])
        )
        streams = sorted(r[0] for r in db.execute("SELECT stream_id FROM streams"))
    return {
        "violations": violations,
        "transcripts": transcripts,
        "db_violations": db_violations,
        "db_utterances": db_utterances,
        "streams": streams,
    }


def assert_no_duplicates(out: Path) -> None:
    ids = [v["id"] for v in _jsonl(out / "violations.jsonl")]
    assert len(ids) == len(set(ids)), "duplicate violations in violations.jsonl"
    for f in (out / "transcripts").glob("*.jsonl"):
        tids = [t["id"] for t in _jsonl(f)]
        assert len(tids) == len(set(tids)), f"duplicate utterances in {f.name}"


def run_with_fault(config, out: Path, inputs: list[str], arm) -> tuple[object, list[int]]:
    """Run a Ray batch on ``inputs``; ``arm(batch)``, called before it starts, returns the fault
    (a callable that takes the index of an ASR actor down: kills it, removes its node) and the
    indexes of the actors it may strike.  It strikes once a window's transcript is done (the run
    is under way) and picks an actor, among those, that is transcribing a window right then:
    striking an actor with nothing to transcribe, or after its transcripts reached the driver,
    leaves nothing to recover from.  Which actor gets which window is up to the scheduler, so
    the victim is chosen then, not before.  Returns the finished driver and how many windows
    the struck actor was transcribing when it struck (nothing if it never could strike)."""
    import threading
    import time

    import ray

    from pipeline.classify.classifier import Classifier
    from pipeline.manifest import Manifest
    from pipeline.output import OutputWriter
    from pipeline.runners.local import Progress
    from pipeline.runners.ray_batch import RayBatch

    version = Classifier(config.classifier).version
    writer = OutputWriter(out, config, version)
    manifest = Manifest(out, config, version)
    batch = RayBatch(config, writer, Progress(enabled=False), manifest)
    fault, strikable = arm(batch)
    struck: list[int] = []
    finished = threading.Event()

    def transcribing() -> tuple[bool, dict[int, int]]:
        """Whether some window's transcript is done, and per strikable actor how many windows
        it is still transcribing."""
        jobs = list(batch.inflight.values())
        if not jobs:
            return batch.completed > 0, {}
        refs = [job.t_ref for job in jobs]
        ready, _ = ray.wait(refs, num_returns=len(refs), timeout=0, fetch_local=False)
        running: dict[int, int] = {}
        for job, ref in zip(jobs, refs, strict=True):
            if ref not in ready and job.actor in strikable:
                running[job.actor] = running.get(job.actor, 0) + 1
        return batch.completed > 0 or bool(ready), running

    def strike_mid_run() -> None:
        while not finished.is_set():
            under_way, running = transcribing()
            if under_way and running:
                victim = max(running, key=running.__getitem__)
                struck.append(running[victim])
                fault(victim)
                return
            time.sleep(0.02)

    striker = threading.Thread(target=strike_mid_run, daemon=True)
    striker.start()
    try:
        batch.run(inputs)
    finally:
        finished.set()
        striker.join()
        batch.shutdown()
        writer.close()
        manifest.close()
    return batch, struck
