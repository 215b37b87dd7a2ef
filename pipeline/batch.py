"""Batch moderation of recorded streams: pick a runner, write outputs, summarise."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from pipeline.classify.classifier import Classifier
from pipeline.config import Config
from pipeline.manifest import Manifest
from pipeline.metrics import Metrics
from pipeline.output import OutputWriter
from pipeline.records import StreamResult
from pipeline.report import fmt_time
from pipeline.runners.local import Progress, run_local


def run_batch(
    sources: list[str], config: Config, out: Path, progress: bool = True, metrics: Metrics | None = None
) -> tuple[list[StreamResult], Path | None, list[str]]:
    """Moderate ``sources`` into ``out``; returns per-input results, the report and warnings.

    A manifest in ``out`` records finished streams and windows as they finish, so a run killed
    mid-way and started again with the same ``out`` redoes only what is missing."""
    version = Classifier(config.classifier).version  # fails fast on a broken lexicon
    writer = OutputWriter(out, config, classifier_version=version)
    manifest = Manifest(out, config, version)
    own_metrics = metrics is None and config.metrics.port is not None
    if own_metrics:
        metrics = Metrics(config.metrics.port, config.metrics.host)
    bar = Progress(enabled=progress)
    try:
        if config.ray.enabled:
            from pipeline.runners.ray_batch import run_ray

            run_ray(sources, config, writer, bar, manifest, metrics)
        else:
            run_local(sources, config, writer, bar, manifest, metrics)
    finally:
        bar.close()
        report = writer.close()
        manifest.close()
        if own_metrics:
            metrics.close()
    if manifest.reused_streams or manifest.reused_windows:
        writer.warnings.insert(
            0,
            f"resumed from {manifest.path}: {manifest.reused_streams} finished stream(s) and "
            f"{manifest.reused_windows} window(s) taken from an earlier run",
        )
    return writer.results, report, writer.warnings


def summary_table(results: list[StreamResult], wall: float) -> str:
    """A plain-text table: one row per input, then totals and failures."""
    cats = ("false_claim", "banned_product", "fraud", "vulgar")
    head = f"{'stream':40s} {'length':>7s} {'utts':>5s} " + " ".join(f"{c[:8]:>8s}" for c in cats) + "  total"
    lines = ["", head, "-" * len(head)]
    total_audio = 0.0
    for r in results:
        if r.stream is None:
            continue
        n = Counter(v.label.category for v in r.violations)
        total_audio += r.stream.media.duration
        kept = sum(t.kept for t in r.transcripts)
        lines.append(
            f"{r.stream.stream_id[:40]:40s} {fmt_time(r.stream.media.duration):>7s} {kept:5d} "
            + " ".join(f"{n.get(c, 0):8d}" for c in cats)
            + f"  {len(r.violations):5d}"
        )
    failed = [r for r in results if not r.ok]
    done = len(results) - len(failed)
    segments = [f for r in results for f in r.failures]
    speed = f", {total_audio / wall:.1f}× real time" if wall > 0 and total_audio else ""
    lines.append("-" * len(head))
    lines.append(
        f"{done} of {len(results)} inputs processed, {fmt_time(total_audio)} of audio in {wall:.1f} s{speed}"
    )
    if failed:
        lines.append(f"{len(failed)} input(s) failed:")
        lines += [f"  {r.source}: {r.error}" for r in failed]
    if segments:
        lines.append(f"{len(segments)} segment(s) failed and were recorded (failed.jsonl):")
        lines += [
            f"  {f.source} {fmt_time(f.start)}–{fmt_time(f.end)} after {f.tries} tries: {f.reason}"
            for f in segments
        ]
    return "\n".join(lines)
