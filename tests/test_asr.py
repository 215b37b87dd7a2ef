"""Real Whisper base (the bundled weights) on the demo clip with both backends, and the
hallucination filter."""

import pytest
from conftest import CLIP

from pipeline.asr.filters import hallucination_reason, to_simplified
from pipeline.asr.weights import BUNDLED_SHA256, WeightsError, bundled_model_dir, resolve_model, sha256_of
from pipeline.config import AsrConfig, HallucinationConfig, load_config
from pipeline.stages import AsrStage, PrepareStage

BACKENDS = ["faster-whisper", "openai-whisper"]


@pytest.fixture(scope="module")
def clip_windows(config):
    return list(PrepareStage(config).process(str(CLIP)))[1:]


@pytest.fixture(scope="module", params=BACKENDS)
def clip_transcripts(request, asr_stage, config, clip_windows):
    """The same integration tests run on both backends, over the same bundled weights."""
    if request.param == config.asr.backend:
        asr = asr_stage
    else:
        asr = AsrStage(config.asr.model_copy(update={"backend": request.param}))
        asr.setup()
    assert asr.backend.backend == request.param
    return [t for w in clip_windows for t in asr.process(w)]


def test_bundled_weights_are_assembled_and_verified():
    folder = bundled_model_dir()
    assert sha256_of(folder / "model.bin") == BUNDLED_SHA256
    assert {"config.json", "tokenizer.json", "vocabulary.json"} <= {p.name for p in folder.iterdir()}


def test_local_folder_and_missing_model(tmp_path):
    path, name = resolve_model(str(bundled_model_dir()))
    assert path == str(bundled_model_dir())
    with pytest.raises(WeightsError, match="no model.bin"):
        resolve_model(str(tmp_path))


def test_unknown_model_name_offline_is_a_clear_error(monkeypatch):
    from pipeline.asr.faster_whisper import FasterWhisperAsr

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    asr = FasterWhisperAsr(AsrConfig(model="no-such-whisper-model-xyz"))
    with pytest.raises(WeightsError, match="neither a local folder nor reachable"):
        asr.setup()


def test_every_utterance_is_transcribed_in_simplified_chinese(clip_transcripts, clip_truth):
    assert len(clip_transcripts) >= len(clip_truth)
    kept = [t for t in clip_transcripts if t.kept]
    assert len(kept) == len(clip_transcripts)
    for t in kept:
        assert t.text == to_simplified(t.text)
        assert t.asr_model.startswith("whisper-base")


def test_known_words_land_at_known_stream_times(clip_transcripts, clip_truth):
    text = "".join(t.text for t in clip_transcripts)
    assert "国家领导人" in text and "养生茶" in text and "宝宝" in text
    words = [w for t in clip_transcripts for w in t.words]
    leader = next(w for w in words if w.text.startswith("领"))  # 国家领导人 in u007 (10.75–14.71)
    assert clip_truth[2]["start"] < leader.start < clip_truth[2]["end"]
    tea = next(w for w in words if "茶" in w.text)  # 养生茶 in u005 (0.50–4.85)
    assert clip_truth[0]["start"] < tea.start < clip_truth[0]["end"]


def test_words_sit_inside_their_utterance_and_join_to_its_text(clip_transcripts):
    for t in clip_transcripts:
        assert "".join(w.text for w in t.words) == t.text
        for w in t.words:
            assert t.utterance.start - 1e-6 <= w.start <= w.end <= t.utterance.end + 1e-6


def test_evidence_span_maps_to_word_times(clip_transcripts):
    t = next(t for t in clip_transcripts if "国家领导人" in t.text)
    a = t.text.index("国家领导人")
    start, end = t.span_time((a, a + 5))
    assert t.utterance.start <= start < end <= t.utterance.end
    assert end - start < 3.0


H = HallucinationConfig()


@pytest.mark.parametrize(
    "text, logprob, no_speech, reason",
    [
        ("字幕由Amara.org社群提供", -0.3, 0.1, "subtitle-credit phrase"),
        ("请不吝点赞 订阅 转发 打赏支持明镜与点点栏目", -0.3, 0.1, "subtitle-credit phrase"),
        ("好的好的好的好的好的好的好的好的", -0.3, 0.1, "repetition loop"),
        ("嗯", -1.5, 0.9, "no speech"),
        ("", -0.3, 0.1, "empty"),
    ],
)
def test_hallucinations_are_flagged(text, logprob, no_speech, reason):
    assert hallucination_reason(text, logprob, no_speech, H).startswith(reason)


@pytest.mark.parametrize("text", ["谢谢观看，想要更便宜的加我微信私聊", "家人们好好看看这件衣服", "买买买"])
def test_speech_is_not_flagged(text):
    assert hallucination_reason(text, -0.4, 0.2, H) == ""


def test_traditional_output_becomes_simplified():
    assert to_simplified("這個養生茶喝了包治百病") == "这个养生茶喝了包治百病"


def test_config_model_option_reaches_the_backend():
    assert load_config(overrides=["asr.model=/nonexistent/dir"]).asr.model == "/nonexistent/dir"
