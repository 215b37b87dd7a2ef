"""The ``livemod`` command: batch, classify, eval and bench."""

from __future__ import annotations

import argparse
import json
import logging
import re
import sys
import time
from pathlib import Path

from pipeline import __version__
from pipeline.config import Config, ConfigError, load_config

log = logging.getLogger("pipeline")

EXIT_OK, EXIT_SOME_FAILED, EXIT_USAGE = 0, 1, 2


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="YAML config (default: configs/default.yaml)")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value, e.g. --set asr.beam_size=3 (repeatable)",
    )
    p.add_argument("-v", "--verbose", action="count", default=0, help="more log output")


def _backend(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--asr-backend",
        choices=["faster-whisper", "openai-whisper"],
        help="Whisper implementation (default from the config: faster-whisper)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="livemod", description=__doc__)
    parser.add_argument("--version", action="version", version=f"livemod {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    b = sub.add_parser("batch", help="moderate recorded streams (files or folders)")
    b.add_argument("inputs", nargs="+", help="media files or folders (searched recursively)")
    b.add_argument("--out", required=True, help="output folder")
    b.add_argument("--glob", default="*", help="in folders, only files matching this pattern")
    b.add_argument("--address", help="Ray cluster to join (host:port or 'auto'); default: local Ray")
    b.add_argument("--no-ray", action="store_true", help="run in this process without Ray")
    b.add_argument(
        "--asr-model",
        help="bundled, a CTranslate2 model folder, a .pt checkpoint (openai-whisper), or a name",
    )
    _backend(b)
    b.add_argument("--asr-workers", type=int, help="ASR actors in the pool")
    b.add_argument("--no-clips", action="store_true", help="do not cut clips")
    b.add_argument("--quiet", action="store_true", help="no progress bar")
    b.add_argument("--metrics-port", type=int, help="serve Prometheus metrics on this port during the run")
    _common(b)

    lv = sub.add_parser("live", help="moderate live streams as they happen")
    lv.add_argument(
        "sources",
        nargs="*",
        help="rtmp:// http(s):// (FLV, HLS) rtsp:// srt:// tcp:// udp:// or a "
        "file played at real-time speed; more streams can be listed in the config (live.streams)",
    )
    lv.add_argument("--stream-id", action="append", default=[], help="id for each source, in order")
    lv.add_argument("--out", default="out/live", help="output folder (default: out/live)")
    lv.add_argument("--duration", type=float, help="stop after this many seconds of stream")
    lv.add_argument("--address", help="Ray cluster to join (host:port or 'auto'); default: local Ray")
    lv.add_argument("--no-ray", action="store_true", help="run in this process without Ray")
    lv.add_argument("--webhook", help="POST each violation to this URL (secret in $LIVEMOD_WEBHOOK_SECRET)")
    lv.add_argument("--metrics-port", type=int, help="serve Prometheus metrics on this port")
    _backend(lv)
    _common(lv)

    c = sub.add_parser("classify", help="classify text lines or JSONL ({id, text})")
    c.add_argument("file", nargs="?", default="-", help="input file, or - for stdin")
    c.add_argument("--out", help="output JSONL file (default: stdout)")
    c.add_argument(
        "--transcripts",
        action="store_true",
        help='every line is our ASR\'s output (else only JSONL rows with "source": "asr"): fused with the '
        "thresholds tuned on transcripts",
    )
    _common(c)

    e = sub.add_parser("eval", help="score the classifier on labelled JSONL, or a batch run on truth")
    e.add_argument(
        "labelled",
        nargs="+",
        help="JSONL with text and labels (e.g. assets/demo/truth.jsonl); several files are scored as one set",
    )
    e.add_argument("--violations", help="a batch run's violations.jsonl: score stream times too")
    e.add_argument("--tolerance", type=float, default=2.0, help="seconds allowed on start times")
    _common(e)

    r = sub.add_parser("review", help="serve the review console over a moderation database")
    r.add_argument("--db", required=True, help="moderation.db of a batch/live run, or a database URL")
    r.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    r.add_argument("--port", type=int, default=8000, help="port (default: 8000)")
    r.add_argument("--media-root", help="folder holding clips/ (default: the database's folder)")
    r.add_argument(
        "--allow-file",
        help="allow-list YAML the lead's allow action writes (default: MEDIA_ROOT/review_allow.yaml)",
    )
    r.add_argument("--secure-cookies", action="store_true", help="mark cookies Secure (behind HTTPS)")
    r.add_argument("-v", "--verbose", action="count", default=0, help="more log output")

    u = sub.add_parser("user", help="review console accounts: add, list, remove")
    u.add_argument("action", choices=["add", "list", "remove"])
    u.add_argument("name", nargs="?", help="user name (add, remove)")
    u.add_argument("--db", required=True, help="moderation database (file or URL)")
    u.add_argument("--role", choices=["moderator", "lead"], default="moderator")
    u.add_argument("--password-stdin", action="store_true", help="read the password from stdin (scripts)")
    u.add_argument("--update", action="store_true", help="change an existing user's password and role")
    u.add_argument("-v", "--verbose", action="count", default=0, help="more log output")

    k = sub.add_parser("bench", help="benchmarks")
    k.add_argument(
        "what",
        choices=["batch", "classify", "live", "asr", "review"],
        help="batch: whole pipeline vs bare faster-whisper; classify: classifier throughput; "
        "live: latency of N concurrent real-time streams; asr: the whisper CLI vs both backends; "
        "review: the review console over 100k violations",
    )
    k.add_argument("--audio", default=None, help="media file (default: the demo stream)")
    k.add_argument("--streams", type=int, default=1, help="bench live: concurrent streams")
    k.add_argument("--duration", type=float, default=120.0, help="bench live: seconds of each stream")
    k.add_argument("--data", default=None, help="JSONL with text for bench classify (default: test split)")
    k.add_argument("--no-ray", action="store_true", help="time the in-process runner instead of Ray")
    k.add_argument("--count", type=int, default=100_000, help="bench review: violations to seed")
    k.add_argument(
        "--rows",
        default=None,
        help="bench asr: comma-separated subset of cli,openai,fw-int8,fw-float32,fw-batched (default: all)",
    )
    k.add_argument(
        "--truth", default=None, help="bench asr: JSONL with the reference text (default: demo truth)"
    )
    _backend(k)
    _common(k)
    return parser


def _config(args) -> Config:
    overrides = list(args.overrides)
    flags = (
        ("asr_model", "asr.model"),
        ("asr_workers", "asr.workers"),
        ("asr_backend", "asr.backend"),
        ("address", "ray.address"),
        ("webhook", "live.webhook.url"),
        ("metrics_port", "metrics.port"),
    )
    for flag, key in flags:
        value = getattr(args, flag, None)
        if value is not None:
            overrides.append(f"{key}={value}")
    if getattr(args, "no_clips", False):
        overrides.append("clips.enabled=false")
    if getattr(args, "no_ray", False):
        overrides.append("ray.enabled=false")
    return load_config(args.config, overrides)


def _check_model(config: Config) -> None:
    """A missing Whisper model is one clear error before anything starts (exit 2)."""
    from pipeline.asr.backend import ensure_model
    from pipeline.asr.weights import WeightsError

    try:
        ensure_model(config.asr)
    except WeightsError as exc:
        raise ConfigError(f"asr.model: {exc}") from None


def expand_inputs(inputs: list[str], pattern: str = "*") -> list[str]:
    """Files as given, folders searched recursively (hidden files skipped); order is stable.
    Files that are not media are kept so that they are reported, not silently ignored."""
    out: list[str] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            out += sorted(
                str(f)
                for f in p.rglob(pattern)
                if f.is_file() and not any(part.startswith(".") for part in f.relative_to(p).parts)
            )
        else:
            out.append(item)
    seen: set[str] = set()
    return [x for x in out if not (x in seen or seen.add(x))]


def cmd_batch(args) -> int:
    from pipeline.batch import run_batch, summary_table

    config = _config(args)
    sources = expand_inputs(args.inputs, args.glob)
    if not sources:
        print("livemod batch: no input files found", file=sys.stderr)
        return EXIT_USAGE
    _check_model(config)
    started = time.monotonic()
    results, report, warnings = run_batch(sources, config, Path(args.out), progress=not args.quiet)
    print(summary_table(results, time.monotonic() - started))
    for w in warnings:
        print(f"warning: {w}", file=sys.stderr)
    out = Path(args.out)
    print(
        f"\noutputs in {out}/: violations.jsonl, transcripts/, clips/, "
        f"{config.output.database}" + (f", {report.name}" if report else "")
    )
    if report:
        print(f"open the report: {report.resolve().as_uri()}")
    return EXIT_SOME_FAILED if any(not r.ok or r.failures for r in results) else EXIT_OK


def live_streams(sources: list[str], ids: list[str], config: Config) -> list:
    from pipeline.config import LiveStream

    if len(ids) > len(sources):
        raise ValueError("more --stream-id than sources")
    streams = list(config.live.streams)
    for i, url in enumerate(sources):
        default = re.sub(r"[^\w.-]+", "_", Path(url).stem if "://" not in url else url.split("://", 1)[1])
        streams.append(
            LiveStream(id=ids[i] if i < len(ids) else default.strip("_")[:40] or f"stream{i}", url=url)
        )
    seen = [s.id for s in streams]
    dupes = {x for x in seen if seen.count(x) > 1}
    if dupes:
        raise ValueError(f"duplicate stream ids: {', '.join(sorted(dupes))} (use --stream-id)")
    return streams


def cmd_live(args) -> int:
    config = _config(args)
    streams = live_streams(args.sources, args.stream_id, config)
    if not streams:
        print("livemod live: no sources (give URLs or list live.streams in the config)", file=sys.stderr)
        return EXIT_USAGE
    _check_model(config)
    out = Path(args.out)
    if config.ray.enabled:
        from pipeline.runners.ray_live import run_live_ray as run
    else:
        from pipeline.runners.live_local import run_live_local as run
    summary = run(streams, config, out, args.duration)
    print(format_live_summary(summary, out))
    return EXIT_OK


def format_live_summary(summary: dict, out: Path) -> str:
    def sec(x):
        return "-" if x is None else f"{x:.2f}s"

    lines = ["", f"{'stream':30s} {'utterances':>10s} {'violations':>10s} {'lost':>5s} {'max backlog':>12s}"]
    for sid, st in summary.get("per_stream", {}).items():
        lines.append(
            f"{sid[:30]:30s} {st['utterances']:10d} {st['violations']:10d} {st['lost']:5d} "
            f"{st['max_backlog']:11.1f}s"
        )
    lines.append(
        f"latency from end of utterance to durable write: p50 {sec(summary['latency_p50'])}, "
        f"p95 {sec(summary['latency_p95'])}, max {sec(summary['latency_max'])} "
        f"over {summary['violations']} violations"
    )
    if summary.get("webhook"):
        lines.append(f"webhook: {summary['webhook']}")
    lines.append(f"outputs in {out}/: violations.jsonl, transcripts/, clips/, moderation.db")
    return "\n".join(lines)


def _read_texts(file: str) -> list[dict]:
    stream = sys.stdin if file == "-" else open(file, encoding="utf-8")
    items = []
    with stream:
        for n, line in enumerate(stream, start=1):
            line = line.rstrip("\n")
            if not line.strip():
                continue
            if line.lstrip().startswith("{"):
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise ValueError(f"{file}:{n}: bad JSON: {exc.msg}") from None
                if "text" not in obj:
                    raise ValueError(f"{file}:{n}: JSON object without a 'text' field")
                item = {"id": obj.get("id", n), "text": str(obj["text"])}
                if "source" in obj:  # "asr": our ASR's transcript
                    item["source"] = obj["source"]
                items.append(item)
            else:
                items.append({"id": n, "text": line})
    return items


def cmd_classify(args) -> int:
    from pipeline.classify.classifier import Classifier

    clf = Classifier(_config(args).classifier)
    items = _read_texts(args.file)
    out = open(args.out, "w", encoding="utf-8") if args.out else sys.stdout
    try:
        for item in items:
            result = clf.classify(item["text"], args.transcripts or item.get("source") == "asr").to_dict()
            out.write(json.dumps({**item, **result}, ensure_ascii=False) + "\n")
    finally:
        if args.out:
            out.close()
    return EXIT_OK


def cmd_eval(args) -> int:
    from pipeline.classify.classifier import Classifier
    from pipeline.evaluate import (
        format_recall_by_aug,
        format_scores,
        match_stream,
        read_jsonl,
        recall_by_aug,
        score_labels,
    )

    if args.violations and len(args.labelled) > 1:
        print("livemod eval: --violations scores one stream: give its one truth file", file=sys.stderr)
        return EXIT_USAGE
    rows = [row for path in args.labelled for row in read_jsonl(path)]
    clf = Classifier(_config(args).classifier)
    gold = [set(r.get("labels", [])) for r in rows]
    heard = [r.get("source") == "asr" for r in rows]  # transcripts: fused as the pipeline fuses its own
    pred = [
        {lab.code for lab in result.labels} for result in clf.classify_many([r["text"] for r in rows], heard)
    ]
    print(f"classifier {clf.version} on {' + '.join(args.labelled)} ({len(rows)} items)")
    print(format_scores(score_labels(gold, pred)))
    if any("aug" in r for r in rows):
        print(format_recall_by_aug(recall_by_aug(rows, pred), rows))
    if args.violations:
        m = match_stream(rows, read_jsonl(args.violations), args.tolerance)
        print(
            f"\nstream: found {len(m.found)}/{len(m.found) + len(m.missed)} violating utterances "
            f"(recall {m.recall:.2f}, start within ±{args.tolerance:g} s), "
            f"{len(m.false_alarms)} false alarms"
        )
        for u in m.missed:
            print(f"  missed  {u['start']:7.2f}s {','.join(u['labels'])}: {u['text']}")
        for v in m.false_alarms:
            print(f"  false   {v['start']:7.2f}s {v['category']}.{v['subcategory']}: {v['text']}")
    return EXIT_OK


def cmd_bench(args) -> int:
    from pipeline.bench import bench_asr, bench_batch, bench_classify, bench_live

    if args.what == "review":
        from pipeline.review.bench import bench_review

        return bench_review(args.count)
    if args.what == "asr":
        return bench_asr(_config(args), args.audio, args.rows, args.truth)
    if args.what == "classify":
        return bench_classify(_config(args), args.data)
    if args.what == "live":
        return bench_live(_config(args), args.streams, args.duration, args.audio, use_ray=not args.no_ray)
    return bench_batch(_config(args), args.audio, use_ray=not args.no_ray)


def cmd_review(args) -> int:
    import uvicorn

    from pipeline.review.app import ReviewSettings, create_app
    from pipeline.review.store import Store, StoreError

    try:
        store = Store.open(args.db)
    except StoreError as exc:
        print(f"livemod review: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if not store.users():
        print(
            f"livemod review: no users yet; add one with `livemod user add NAME --role lead --db {args.db}`",
            file=sys.stderr,
        )
        return EXIT_USAGE
    settings = ReviewSettings(
        db=args.db,
        media_root=Path(args.media_root) if args.media_root else None,
        allow_file=Path(args.allow_file) if args.allow_file else None,
        secure_cookies=args.secure_cookies,
    )
    app = create_app(settings, store)
    print(f"livemod review: http://{args.host}:{args.port}/ (Ctrl+C stops)", file=sys.stderr)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return EXIT_OK


def _read_password(from_stdin: bool) -> str:
    import getpass

    if from_stdin:
        return sys.stdin.readline().rstrip("\n")
    first = getpass.getpass("password: ")
    if first != getpass.getpass("again: "):
        raise ValueError("the two passwords differ")
    return first


def cmd_user(args) -> int:
    from pipeline.review.auth import hash_password
    from pipeline.review.store import Store, StoreError

    try:
        store = Store.open(args.db, create=args.action == "add")
        if args.action == "list":
            for row in store.users():
                print(f"{row['name']}\t{row['role']}\t{row['created_at']}")
            return EXIT_OK
        if not args.name:
            raise ValueError(f"user {args.action}: give a user name")
        if args.action == "remove":
            if not store.remove_user(args.name):
                raise StoreError(f"no user {args.name!r}")
            store.audit("cli", "admin", "user_remove", None, {"name": args.name})
            print(f"removed {args.name}")
            return EXIT_OK
        store.add_user(args.name, args.role, hash_password(_read_password(args.password_stdin)), args.update)
        store.audit(
            "cli",
            "admin",
            "user_update" if args.update else "user_add",
            None,
            {"name": args.name, "role": args.role},
        )
        print(f"{'updated' if args.update else 'added'} {args.name} ({args.role})")
        return EXIT_OK
    except StoreError as exc:
        print(f"livemod user: {exc}", file=sys.stderr)
        return EXIT_USAGE


COMMANDS = {
    "batch": cmd_batch,
    "live": cmd_live,
    "classify": cmd_classify,
    "eval": cmd_eval,
    "bench": cmd_bench,
    "review": cmd_review,
    "user": cmd_user,
}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    level = logging.WARNING - 10 * min(args.verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    try:
        return COMMANDS[args.command](args)
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (ValueError, OSError) as exc:
        print(f"livemod {args.command}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
