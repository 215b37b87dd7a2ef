"""VAD utterances on real speech, stream times, forced cuts and window packing."""

import numpy as np
import pytest
from conftest import CLIP

from pipeline.config import VadConfig
from pipeline.media import decode_audio, decode_blocks
from pipeline.records import SAMPLE_RATE
from pipeline.segment import SileroVad, pack_windows, segment_blocks


@pytest.fixture(scope="module")
def vad():
    return SileroVad()


def utterances(vad, config=None, block_seconds=30.0):
    blocks = decode_blocks(str(CLIP), block_seconds=block_seconds)
    return list(segment_blocks("clip", blocks, config or VadConfig(), vad))


def test_every_spoken_line_is_covered_with_stream_times(vad, clip_truth):
    utts = utterances(vad)
    for line in clip_truth:
        covering = [u for u, _ in utts if u.start < line["end"] and u.end > line["start"]]
        assert covering, line["text"]
        assert abs(covering[0].start - line["start"]) < 0.6
    for u, audio in utts:
        assert abs(len(audio) / SAMPLE_RATE - u.duration) < 0.01
        assert u.end <= 15.3


def test_music_gaps_are_not_speech(vad, clip_truth):
    for u, _ in utterances(vad):
        mid = (u.start + u.end) / 2
        assert any(t["start"] - 0.5 <= mid <= t["end"] + 0.5 for t in clip_truth)


def test_block_size_does_not_change_utterances(vad):
    a = [(u.start, u.end) for u, _ in utterances(vad, block_seconds=30)]
    b = [(u.start, u.end) for u, _ in utterances(vad, block_seconds=0.7)]
    assert a == b


def test_long_speech_is_cut(vad):
    cfg = VadConfig(max_utterance_s=2.0)
    utts = utterances(vad, cfg)
    assert max(u.duration for u, _ in utts) <= 2.0 + 1e-6
    assert len(utts) > len(utterances(vad))


def test_audio_slices_are_the_stream_audio(vad):
    full = decode_audio(str(CLIP))
    for u, audio in utterances(vad):
        a = int(round(u.start * SAMPLE_RATE))
        assert np.allclose(audio, full[a : a + len(audio)])


def test_windows_pack_in_order_and_map_back(vad):
    utts = utterances(vad)
    windows = list(pack_windows(iter(utts), window_s=8.0, gap_s=0.4))
    assert [u for w in windows for u in w.utterances] == [u for u, _ in utts]
    for w in windows:
        assert w.duration <= 8.0 + 1e-6 or len(w.utterances) == 1
        for i, u in enumerate(w.utterances):
            t = w.offsets[i] + 0.5
            assert w.locate(t) == i
            assert abs(w.to_stream(i, t) - (u.start + 0.5)) < 1e-6


@pytest.mark.parametrize("sequence", [True, False])
def test_probabilities_are_silero_vads_own(sequence):
    """The torch-free VAD (the sequence export, many frames per call; or the streaming model
    frame by frame) gives bit for bit the probabilities of silero-vad's own ONNX wrapper, fed
    the way the Segmenter feeds it: blocks of any length, state carried over."""
    import torch
    from silero_vad import load_silero_vad

    from pipeline.segment import FRAME, silero_model_dir

    if sequence and not (silero_model_dir() / "silero_vad_16k_sequence.onnx").is_file():
        pytest.skip("this silero-vad has no sequence export")
    audio = decode_audio(str(CLIP))
    frames = audio[: len(audio) // FRAME * FRAME].reshape(-1, FRAME)
    theirs = load_silero_vad(onnx=True)
    expected = np.array([theirs(torch.from_numpy(f.copy()), SAMPLE_RATE).item() for f in frames], np.float32)
    ours = SileroVad(sequence=sequence)
    cuts = [0, 1, 9, 700, 701, len(frames)]  # a 1-frame call, short calls, one over MAX_FRAMES
    got = np.concatenate([ours.probs(frames[a:b]) for a, b in zip(cuts, cuts[1:])])
    assert np.array_equal(got, expected)
    ours.reset()
    assert ours(frames[0]) == expected[0]


def test_vad_runs_without_torch():
    """Decoding and VAD need no torch (its start-up and memory stay out of the workers)."""
    import subprocess
    import sys

    code = (
        "import sys; from pipeline.stages import PrepareStage; from pipeline.config import load_config; "
        f"items = list(PrepareStage(load_config()).process({str(CLIP)!r})); "
        "assert len(items) > 1 and 'torch' not in sys.modules, sorted(sys.modules)"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
