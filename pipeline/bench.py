"""``livemod bench batch``: the whole pipeline against bare faster-whisper on the same audio.

Both sides use the same weights, compute type, threads and beam size.  Model loading and Ray
start-up are one-off costs and are timed apart from the processing itself, which is what
grows with hours of audio; the pipeline's cold total (start-up included) is printed too.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

from pipeline.config import PROJECT_ROOT, Config
from pipeline.media import decode_audio, probe
from pipeline.records import SAMPLE_RATE

DEMO_STREAM = PROJECT_ROOT / "assets" / "demo" / "stream.mp4"


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
    texts = [r["text"] for r in read_jsonl(path)]
    texts = (texts * (minimum // max(1, len(texts)) + 1))[: max(minimum, len(texts))]
    chars = sum(map(len, texts)) / len(texts)
    print(f"texts: {path} repeated to {len(texts)} utterances, {chars:.1f} characters on average; 1 thread")
    lexicon = Classifier(config.classifier.model_copy(update={"model_dir": None, "reload_interval_s": None}))
    fused = Classifier(config.classifier.model_copy(update={"model_threads": 1, "reload_interval_s": None}))
    lexicon.setup()
    fused.setup()
    rows = [("lexicon + rules", lexicon.classify_many)]
    if fused.model is not None:
        rows += [
            (
                "model (batches of 64)",
                lambda batch: fused.model.predict([fused.normalize(t).text for t in batch], batch_size=64),
            ),
            ("fused: normalise, lexicon, rules, model", fused.classify_many),
        ]
    print(f"\n{'':42s} {'seconds':>8s} {'utterances/s':>13s}")
    for name, fn in rows:
        fn(texts[:64])  # warm up
        t0 = time.perf_counter()
        fn(texts)
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
    from pipeline.live.replay import Publisher, free_port

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
    for p in publishers:
        p.kill()
    print(
        f"\n{'stream':10s} {'utterances':>10s} {'violations':>10s} {'lost':>5s} {'max backlog':>12s} "
        f"{'backlog 1st half':>17s} {'2nd half':>9s}"
    )
    for sid, st in summary["per_stream"].items():
        b = st["backlog_samples"] or [0.0]
        half = max(1, len(b) // 2)
        print(
            f"{sid:10s} {st['utterances']:10d} {st['violations']:10d} {st['lost']:5d} {st['max_backlog']:11.1f}s "
            f"{max(b[:half]):16.1f}s {max(b[half:] or [0.0]):8.1f}s"
        )

    def sec(x):
        return "-" if x is None else f"{x:.2f} s"

    print(
        f"\nlatency, end of utterance → durable write, over {summary['violations']} violations: "
        f"p50 {sec(summary['latency_p50'])}, p95 {sec(summary['latency_p95'])}, max {sec(summary['latency_max'])}"
    )
    print(f"CPU use of the machine during the run: {100 * (busy1 - busy0) / max(1.0, total1 - total0):.0f}%")
    return 0
