"""Benchmarks.

``livemod bench batch``: the whole pipeline against bare faster-whisper on the same audio.
Both sides use the same weights, compute type, threads and beam size.  Model loading and Ray
start-up are one-off costs and are timed apart from the processing itself, which is what
grows with hours of audio; the pipeline's cold total (start-up included) is printed too.

``livemod bench asr``: the ``whisper`` CLI as a user runs it (the baseline) against both of
livemod's backends on the same audio and the same bundled weights, each row in its own
process, from a cold start to the finished transcript: wall time, real-time factor, peak
memory (the process's high-water RSS) and character error rate against the reference text.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pipeline.config import PROJECT_ROOT, Config
from pipeline.media import decode_audio, probe
from pipeline.records import SAMPLE_RATE

DEMO_STREAM = PROJECT_ROOT / "assets" / "demo" / "stream.mp4"
DEMO_TRUTH = PROJECT_ROOT / "assets" / "demo" / "truth.jsonl"


def _bare_asr(config: Config, audio) -> tuple[float, float, str]:
    """Load faster-whisper and transcribe the decoded audio as a user of the library would."""
    from faster_whisper import WhisperModel

    from pipeline.asr.faster_whisper import pick_device
    from pipeline.asr.weights import resolve_model

    c = config.asr
    t0 = time.perf_counter()
    model = WhisperModel(
        resolve_model(c.model)[0],
        device=pick_device(c.device),
        compute_type=c.compute_type,
        cpu_threads=c.cpu_threads,
    )
    t1 = time.perf_counter()
    segments, _ = model.transcribe(audio, language=c.language, beam_size=c.beam_size)
    text = "".join(s.text for s in segments)
    return t1 - t0, time.perf_counter() - t1, text


def _pipeline(config: Config, source: str, use_ray: bool) -> tuple[float, float, int]:
    """Run the batch pipeline into a scratch folder: (start-up s, processing s, violations)."""
    from pipeline.classify.classifier import Classifier
    from pipeline.output import OutputWriter
    from pipeline.runners.local import Progress, run_local

    with tempfile.TemporaryDirectory() as out:
        t0 = time.perf_counter()
        writer = OutputWriter(Path(out), config, Classifier(config.classifier).version)
        bar = Progress(enabled=False)
        if use_ray:
            import ray

            from pipeline.runners.ray_batch import RayBatch

            batch = RayBatch(config, writer, bar)
            ray.get(
                [a.__ray_ready__.remote() for a in [*batch.preparers, *batch.asr.actors, batch.classifier]]
            )
            t1 = time.perf_counter()
            batch.run([source])
        else:
            t1 = t0  # the local runner loads its models inside run_local
            run_local([source], config, writer, bar)
        writer.close()
        t2 = time.perf_counter()
        return t1 - t0, t2 - t1, sum(len(r.violations) for r in writer.results)


def bench_batch(config: Config, audio_path: str | None, use_ray: bool = True) -> int:
    source = str(audio_path or DEMO_STREAM)
    seconds = probe(source).duration
    audio = decode_audio(source)
    print(f"audio: {source} ({seconds:.1f} s, {len(audio) / SAMPLE_RATE:.1f} s decoded)")
    print(
        f"asr: {config.asr.model} {config.asr.compute_type}, beam {config.asr.beam_size}, "
        f"cpu_threads {config.asr.cpu_threads or 'auto'}; runner: {'ray' if use_ray else 'local'}"
    )
    bare_load, bare, _ = _bare_asr(config, audio)
    start, run, n = _pipeline(config, source, use_ray)
    rows = [
        ("bare faster-whisper transcribe()", bare, bare_load),
        ("livemod pipeline (decode, VAD, ASR, classify, clips, db, report)", run, start),
    ]
    print(f"\n{'':66s} {'wall s':>8s} {'× real time':>12s} {'vs bare':>8s} {'start-up s':>11s}")
    for name, wall, setup in rows:
        print(f"{name:66s} {wall:8.2f} {seconds / wall:12.1f} {wall / bare:7.2f}× {setup:11.2f}")
    print(
        f"{'livemod pipeline, cold (start-up included)':66s} {start + run:8.2f} "
        f"{seconds / (start + run):12.1f} {(start + run) / bare:7.2f}×"
    )
    print(
        f"\npipeline / bare ASR = {run / bare:.2f} (target ≤ 1.15); "
        f"pipeline speed = {seconds / run:.1f}× real time (target ≥ 5); {n} violations"
    )
    return 0


def bench_classify(config: Config, data: str | None, minimum: int = 3000) -> int:
    """Throughput on one core: lexicon + rules, the model batched, and the two fused."""
    import torch

    from pipeline.classify.classifier import Classifier
    from pipeline.evaluate import read_jsonl

    torch.set_num_threads(1)
    default = PROJECT_ROOT / "data" / "corpus" / "test.jsonl"
    path = (
        Path(data)
        if data
        else (default if default.is_file() else PROJECT_ROOT / "assets" / "demo" / "truth.jsonl")
    )
    # rows marked "source": "asr" are our ASR's transcripts: fused with the transcripts' settings
    items = [(r["text"], r.get("source") == "asr") for r in read_jsonl(path)]
    items = (items * (minimum // max(1, len(items)) + 1))[: max(minimum, len(items))]
    texts, heard = [t for t, _ in items], [h for _, h in items]
    chars = sum(map(len, texts)) / len(texts)
    print(
        f"texts: {path} repeated to {len(texts)} utterances ({sum(heard)} transcripts), "
        f"{chars:.1f} characters on average; 1 thread"
    )
    lexicon = Classifier(config.classifier.model_copy(update={"model_dir": None, "reload_interval_s": None}))
    fused = Classifier(config.classifier.model_copy(update={"model_threads": 1, "reload_interval_s": None}))
    lexicon.setup()
    fused.setup()
    rows = [("lexicon + rules", lambda n: lexicon.classify_many(texts[:n]))]  # the first n utterances
    if fused.model is not None:
        rows += [
            (
                "model (batches of 64)",
                lambda n: fused.model.predict([fused.normalize(t).text for t in texts[:n]], batch_size=64),
            ),
            ("fused: normalise, lexicon, rules, model", lambda n: fused.classify_many(texts[:n], heard[:n])),
        ]
    print(f"\n{'':42s} {'seconds':>8s} {'utterances/s':>13s}")
    for name, fn in rows:
        fn(64)  # warm up
        t0 = time.perf_counter()
        fn(len(texts))
        dt = time.perf_counter() - t0
        print(f"{name:42s} {dt:8.2f} {len(texts) / dt:13.0f}")
    print("\ntargets: lexicon + rules ≥ 2,000 utterances/s, model ≥ 200 utterances/s")
    return 0


def _cpu_times() -> tuple[float, float]:
    """(busy, total) jiffies of the whole machine, from /proc/stat."""
    with open("/proc/stat") as f:
        fields = [float(x) for x in f.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0.0)
    return sum(fields) - idle, sum(fields)


def bench_live(config: Config, streams: int, duration: float, media: str | None, use_ray: bool) -> int:
    """Replay the demo stream as N concurrent real-time sources over loopback TCP."""
    from pipeline.config import LiveStream
    from pipeline.evaluate import match_stream, read_jsonl
    from pipeline.live.replay import Publisher, free_port
    from pipeline.live.worker import STAGES

    media = str(media or DEMO_STREAM)
    length = probe(media).duration
    duration = min(duration, length)
    config = config.model_copy(update={"live": config.live.model_copy(update={"stdout": False})})
    ports = [free_port() for _ in range(streams)]
    sources = [
        LiveStream(id=f"bench{i + 1}", url=f"tcp://127.0.0.1:{p}?listen=1") for i, p in enumerate(ports)
    ]
    publishers = [Publisher(media, f"tcp://127.0.0.1:{p}").start(delay=1.0) for p in ports]
    print(
        f"{streams} stream(s) of {media} ({length:.0f} s) replayed in real time over loopback TCP, "
        f"{duration:.0f} s each; runner: {'ray' if use_ray else 'local'}; {os.cpu_count()} cores"
    )
    with tempfile.TemporaryDirectory() as out:
        busy0, total0 = _cpu_times()
        if use_ray:
            from pipeline.runners.ray_live import run_live_ray as run
        else:
            from pipeline.runners.live_local import run_live_local as run
        summary = run(sources, config, Path(out), duration)
        busy1, total1 = _cpu_times()
        found_file = Path(out) / "violations.jsonl"
        violations = read_jsonl(found_file) if found_file.is_file() else []
    for p in publishers:
        p.kill()
    truth = None
    if Path(media).resolve() == DEMO_STREAM.resolve():  # the demo's truth: what each stream should find
        truth = [u for u in read_jsonl(DEMO_TRUTH) if u["end"] < duration - 1.0]
    print(
        f"\n{'stream':10s} {'utterances':>10s} {'violations':>10s} {'lost':>5s} {'max backlog':>12s} "
        f"{'backlog 1st half':>17s} {'2nd half':>9s}" + ("  truth found  false alarms" if truth else "")
    )
    missed: list[str] = []
    for sid, st in summary["per_stream"].items():
        b = st["backlog_samples"] or [0.0]
        half = max(1, len(b) // 2)
        found = ""
        if truth:
            m = match_stream(truth, [v for v in violations if v["stream_id"] == sid])
            found = f"  {len(m.found):5d} of {len(m.found) + len(m.missed):<3d} {len(m.false_alarms):12d}"
            missed += [f"{sid} {u['start']:.1f}s {','.join(u['labels'])} {u['text']}" for u in m.missed]
            missed += [
                f"{sid} {v['start']:.1f}s {v['category']} (false alarm) {v['text']}" for v in m.false_alarms
            ]
        print(
            f"{sid:10s} {st['utterances']:10d} {st['violations']:10d} {st['lost']:5d} {st['max_backlog']:11.1f}s "
            f"{max(b[:half]):16.1f}s {max(b[half:] or [0.0]):8.1f}s" + found
        )

    for line in missed:
        print(f"  {line}")

    def sec(x):
        return "-" if x is None else f"{x:.2f} s"

    print(
        f"\nlatency, end of utterance → durable write, over {summary['violations']} violations: "
        f"p50 {sec(summary['latency_p50'])}, p95 {sec(summary['latency_p95'])}, max {sec(summary['latency_max'])}"
    )
    print(f"CPU use of the machine during the run: {100 * (busy1 - busy0) / max(1.0, total1 - total0):.0f}%")
    stages = {k: sorted(x for st in summary["per_stream"].values() for x in st["stages"][k]) for k in STAGES}
    n = len(stages["vad"])
    if n:
        print(f"where an utterance's latency goes, over {n} utterances (mean / p95):")
        for k, xs in stages.items():
            print(f"  {STAGE_NAMES[k]:58s} {sum(xs) / n:5.2f} s / {xs[min(n - 1, int(0.95 * n))]:5.2f} s")
    return 0


STAGE_NAMES = {
    "vad": "end of speech → VAD's cut (end-of-utterance silence, reads)",
    "queue": "waiting behind the stream's utterance in moderation",
    "moderation": "ASR and classifier, with their queues and transport",
    "write": "durable write (database, JSONL)",
}


# -- bench asr --------------------------------------------------------------------------------

ASR_ROWS: dict[str, tuple[str, dict]] = {  # in the order they run: the default next to the baseline
    "cli": ("whisper CLI (openai-whisper, baseline)", {}),
    "fw-int8": (
        "livemod default (fw int8, 2 side by side)",
        {"backend": "faster-whisper", "compute_type": "int8"},
    ),
    "fw-one": (
        "livemod faster-whisper int8, one at a time",
        {"backend": "faster-whisper", "compute_type": "int8", "batch_size": 1},
    ),
    "fw-batched": (
        "livemod faster-whisper int8, batched 4",
        {"backend": "faster-whisper", "compute_type": "int8", "batch_size": 4, "batch_mode": "batched"},
    ),
    "fw-float32": (
        "livemod faster-whisper float32",
        {"backend": "faster-whisper", "compute_type": "float32"},
    ),
    "openai": ("livemod openai-whisper float32", {"backend": "openai-whisper", "compute_type": "float32"}),
}


class _Collect:
    """Where the local runner hands finished streams (bench asr keeps them in memory)."""

    def __init__(self) -> None:
        self.results = []

    def submit(self, result) -> None:
        self.results.append(result)

    def poll(self) -> None:
        pass


def _asr_row(config_json: str, audio: str, out: str, started: str) -> None:
    """A livemod row, in its own process, from the audio file to its transcripts: the local
    runner (``livemod batch --no-ray``) without the classifier.  Decoding, VAD and windowing
    run in a thread a few windows ahead of ASR while the model loads, then windows go to the
    decoders as they come (the product's code path, nothing prepared beforehand).  ``started``:
    the parent's ``time.time()`` when it started this process, what the marks count from."""
    from pipeline.config import Config
    from pipeline.runners.local import Progress, run_local

    t0 = time.perf_counter() - (time.time() - float(started))  # perf_counter() at the start
    config = Config.model_validate_json(Path(config_json).read_text())
    collect, marks = _Collect(), {}
    run_local([audio], config, collect, Progress(enabled=False), classify=False, timings=marks)
    (result,) = collect.results
    if result.error or result.failures:
        raise RuntimeError(f"{audio}: {result.error or result.failures}")
    marks = {k: v - t0 for k, v in marks.items()}
    result_json = {
        "text": "".join(t.text for t in result.transcripts),
        "marks": marks,
        "model": result.transcripts[0].asr_model if result.transcripts else "",
    }
    Path(out).write_text(json.dumps(result_json, ensure_ascii=False))


def _run_measured(cmd: list[str], env: dict, log: Path) -> tuple[int, float, float, float]:
    """Run ``cmd``: (exit code, wall s, CPU s, peak RSS in MB), CPU and peak of it and its children."""
    with open(log, "wb") as f:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    cpu = usage.ru_utime + usage.ru_stime
    return proc.returncode, wall, cpu, usage.ru_maxrss / 1024  # ru_maxrss is in KiB on Linux


def _whisper_cli(config: Config, audio: str, checkpoint: str, outdir: str) -> list[str]:
    """The whisper CLI as a user runs it, with the same language, prompt and beam as livemod."""
    exe = Path(sys.executable).parent / "whisper"
    cmd = [str(exe)] if exe.is_file() else [sys.executable, "-m", "whisper"]
    c = config.asr
    return cmd + [
        audio,
        "--model", checkpoint,
        "--language", c.language,
        "--initial_prompt", c.initial_prompt,
        "--beam_size", str(c.beam_size),
        "--fp16", "False",
        "--output_format", "txt",
        "--output_dir", outdir,
        "--verbose", "False",
    ]  # fmt: skip


def _load_avg() -> str:
    try:
        return " ".join(f"{x:.1f}" for x in os.getloadavg())
    except OSError:  # pragma: no cover
        return "?"


def bench_asr(
    config: Config, audio_path: str | None, rows: str | None = None, truth: str | None = None
) -> int:
    from pipeline.asr.cer import cer
    from pipeline.asr.weights import bundled_model_dir, openai_checkpoint_for
    from pipeline.evaluate import read_jsonl
    from pipeline.media import find_ffmpeg

    source = str(audio_path or DEMO_STREAM)
    names = [r.strip() for r in rows.split(",")] if rows else list(ASR_ROWS)
    unknown = [r for r in names if r not in ASR_ROWS]
    if unknown:
        raise ValueError(f"unknown rows {', '.join(unknown)}; choose from {', '.join(ASR_ROWS)}")
    truth_path = Path(truth) if truth else (DEMO_STREAM.parent / "truth.jsonl" if not audio_path else None)
    reference = "".join(r["text"] for r in read_jsonl(truth_path)) if truth_path else None
    seconds = probe(source).duration
    checkpoint = str(openai_checkpoint_for(bundled_model_dir()))  # converted before any timing
    print(f"audio: {source} ({seconds:.1f} s); reference: {truth_path or 'none (no CER)'}")
    print(
        f"model: bundled Whisper base; language {config.asr.language}, beam {config.asr.beam_size}, "
        f"same initial prompt; {os.cpu_count()} cores, load average {_load_avg()} at the start"
    )
    print(
        "each row is one process timed from its start to the finished transcript (imports, model\n"
        "load, decoding and VAD included); a livemod row runs the local runner (livemod batch\n"
        "--no-ray) without the classifier: its peak memory is what one worker needs\n"
    )
    results: dict[str, tuple[float, float, float, float | None]] = {}
    texts: dict[str, str] = {}
    marks: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="livemod-bench-asr-") as tmp:
        tmpdir = Path(tmp)
        bindir = tmpdir / "bin"  # the whisper CLI calls `ffmpeg`: the one livemod uses
        bindir.mkdir()
        os.symlink(find_ffmpeg(config.media.ffmpeg), bindir / "ffmpeg")
        env = dict(os.environ, PATH=f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}")
        print(
            f"{'':44s} {'wall s':>7s} {'RTF':>6s} {'CPU s':>7s} {'peak MB':>8s} {'CER':>6s} "
            f"{'vs CLI: wall':>12s} {'CPU':>6s}"
        )
        for name in names:
            label, update = ASR_ROWS[name]
            log = tmpdir / f"{name}.log"
            if name == "cli":
                outdir = tmpdir / "cli"
                cmd = _whisper_cli(config, source, checkpoint, str(outdir))
                code, wall, cpu, peak = _run_measured(cmd, env, log)
                txt = outdir / f"{Path(source).stem}.txt"
                text = txt.read_text(encoding="utf-8") if code == 0 and txt.is_file() else None
            else:
                row_config = config.model_copy(update={"asr": config.asr.model_copy(update=update)})
                cfg_file, out = tmpdir / f"{name}.json", tmpdir / f"{name}.out.json"
                cfg_file.write_text(row_config.model_dump_json())
                cmd = [sys.executable, "-m", "pipeline.bench", "asr-row", str(cfg_file), source, str(out)]
                cmd.append(repr(time.time()))
                code, wall, cpu, peak = _run_measured(cmd, env, log)
                row = json.loads(out.read_text()) if code == 0 and out.is_file() else None
                text = row["text"] if row else None
                if row:
                    marks[name] = row["marks"]
            if text is None:
                tail = log.read_text(errors="replace").strip().splitlines()[-3:]
                print(f"{label:44s} failed (exit {code}): {' | '.join(tail)}")
                continue
            error = cer(reference, text) if reference is not None else None
            results[name] = (wall, cpu, peak, error)
            texts[name] = text
            base = results.get("cli")
            cer_text = "-" if error is None else f"{100 * error:5.1f}%"
            vs_wall = "-" if base is None else f"{base[0] / wall:.2f}×"
            vs_cpu = "-" if base is None else f"{base[1] / cpu:.2f}×"
            print(
                f"{label:44s} {wall:7.1f} {wall / seconds:6.3f} {cpu:7.1f} {peak:8.0f} {cer_text:>6s} "
                f"{vs_wall:>12s} {vs_cpu:>6s}",
                flush=True,
            )
    if marks:
        print(
            "\nlivemod rows, seconds from the process's start: model loaded (the file is being decoded and\n"
            "VAD'd meanwhile), first window handed to ASR, whole file decoded and VAD'd, transcripts done"
        )
        for name, m in marks.items():
            when = "  ".join(
                f"{k} {m[k]:5.1f}" for k in ("models", "first_window", "prepared", "done") if k in m
            )
            print(f"  {ASR_ROWS[name][0]:44s} {when}")
    if "openai" in texts and len(texts) > 1:
        print("\nCER between transcripts (the same weights; reference: livemod openai-whisper float32):")
        for name, text in texts.items():
            if name != "openai":
                print(f"  {ASR_ROWS[name][0]:44s} {100 * cer(texts['openai'], text):5.1f}%")
    print(f"\nload average at the end: {_load_avg()} (other work on the machine inflates wall times;")
    print("CPU time much less so; the ratios between rows of one run are what to compare)")
    if "cli" in results and "fw-int8" in results:
        (bw, bc, bp, be), (w, c, p, e) = results["cli"], results["fw-int8"]
        ok_cer = "" if be is None else f", CER {100 * e:.1f}% vs {100 * be:.1f}% (target: ≤)"
        print(
            f"default ({config.asr.backend} {config.asr.compute_type}, {config.asr.batch_size} "
            f"{config.asr.batch_mode}): {bw / w:.1f}× faster than the whisper CLI in wall "
            f"time, {bc / c:.1f}× in CPU time (target ≥ 6×), peak {p:.0f} MB (target ≤ 600; "
            f"CLI {bp:.0f} MB){ok_cer}"
        )
    return 0


if __name__ == "__main__" and len(sys.argv) == 6 and sys.argv[1] == "asr-row":
    import logging

    logging.basicConfig(level=logging.WARNING)
    _asr_row(*sys.argv[2:])
