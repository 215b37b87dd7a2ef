"""Live ASR settings on real Whisper: one utterance per call, the encoder given only its audio."""

import pytest
from conftest import CLIP

from pipeline.asr.cer import cer
from pipeline.live.worker import live_asr_config
from pipeline.media import decode_audio
from pipeline.records import SAMPLE_RATE
from pipeline.segment import SileroVad, pack_windows, segment_blocks
from pipeline.stages import AsrStage, ClassifyStage


@pytest.fixture(scope="module")
def utterance_windows(config):
    """The demo clip cut as a live worker cuts it, one window per utterance."""
    audio = decode_audio(str(CLIP))
    vad = config.vad.model_copy(
        update={"max_utterance_s": config.live.max_utterance_s, "min_silence_ms": config.live.min_silence_ms}
    )
    blocks = (audio[i : i + 4000] for i in range(0, len(audio), 4000))
    utterances = segment_blocks("clip", blocks, vad, SileroVad())
    return [next(pack_windows([u], config.asr.window_s, config.asr.gap_s)) for u in utterances]


def transcribe(asr: AsrStage, windows) -> tuple[list, list[int]]:
    """Transcripts, and the number of mel frames the encoder was given for each window."""
    frames: list[int] = []
    model = asr.backend.model
    encode = model.encode

    def spy(features):
        frames.append(features.shape[-1])
        return encode(features)

    model.encode = spy
    try:
        return [t for w in windows for t in asr.process(w)], frames
    finally:
        del model.encode


def test_live_encoder_sees_the_utterance_not_30_s_and_hears_the_same(
    config, asr_stage, utterance_windows, clip_truth
):
    live = AsrStage(live_asr_config(config))
    live.setup()
    assert not live.config.full_context
    short, short_frames = transcribe(live, utterance_windows)
    full, full_frames = transcribe(asr_stage, utterance_windows)

    assert len(utterance_windows) == len(clip_truth) == 3
    assert full_frames == [3000] * 3  # batch: 30 s padded, as Whisper was trained
    for w, n in zip(utterance_windows, short_frames, strict=True):
        assert len(w.audio) / SAMPLE_RATE * 100 <= n <= len(w.audio) / SAMPLE_RATE * 100 + 200

    reference = "".join(u["text"] for u in clip_truth)
    assert (
        cer(reference, "".join(t.text for t in short)) <= cer(reference, "".join(t.text for t in full)) + 0.05
    )
    for t in short:  # word timings still place the words inside their utterance
        assert t.words and all(t.utterance.start <= w.start <= w.end <= t.utterance.end for w in t.words)

    classify = ClassifyStage(config)
    classify.setup()
    for t, truth in zip(short, clip_truth, strict=True):
        found = {v.label.code for v in classify.process([t], str(CLIP))}
        assert found == set(truth["labels"]), (t.text, truth)
