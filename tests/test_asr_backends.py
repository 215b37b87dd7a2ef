"""The two Whisper backends on the same weights: the CTranslate2 → openai-whisper conversion,
batched decoding, model look-up errors, the CER helper, and the cross-backend agreement."""

import struct

import numpy as np
import pytest
from conftest import CLIP, STREAM, read_jsonl

from pipeline.asr.cer import cer, edit_distance, normalize
from pipeline.asr.convert import model_dims, read_ct2_model
from pipeline.asr.weights import WeightsError, bundled_model_dir, resolve_model, resolve_openai_model
from pipeline.cli import main
from pipeline.config import AsrConfig, ConfigError, load_config
from pipeline.stages import AsrStage, PrepareStage

# -- CER ------------------------------------------------------------------------------------


def test_cer_ignores_punctuation_space_width_and_script():
    assert normalize("這個 養生茶，ＡＢ！") == "这个养生茶ab"
    assert cer("这个养生茶。", "這個養生茶") == 0.0
    assert edit_distance("kitten", "sitting") == 3
    assert cer("包治百病", "包制摆病") == pytest.approx(0.5)
    assert cer("", "") == 0.0 and cer("", "多") == 1.0
    assert normalize("原价1999，今天99，打8.5折，50%") == "原价一千九百九十九今天九十九打八点五折百分之五十"
    assert normalize("10 100 1005 20000") == "十一百一千零五二万"


# -- conversion -----------------------------------------------------------------------------


def _write_ct2(path, variables: dict, aliases: dict | None = None) -> None:
    """A model.bin the way ctranslate2/specs/model_spec.py writes one."""
    ids = {np.dtype("float32"): 0, np.dtype("int8"): 1, np.dtype("int16"): 2, np.dtype("float16"): 4}

    def string(f, s):
        f.write(struct.pack("H", len(s) + 1) + s.encode() + b"\0")

    with open(path, "wb") as f:
        f.write(struct.pack("I", 6))
        string(f, "TestSpec")
        f.write(struct.pack("I", 1))
        f.write(struct.pack("I", len(variables)))
        for name, arr in variables.items():
            string(f, name)
            f.write(struct.pack("B", arr.ndim) + b"".join(struct.pack("I", d) for d in arr.shape))
            f.write(struct.pack("B", ids[arr.dtype]) + struct.pack("I", arr.nbytes) + arr.tobytes())
        f.write(struct.pack("I", len(aliases or {})))
        for a, b in (aliases or {}).items():
            string(f, a)
            string(f, b)


def test_reader_dequantizes_int8_rows_and_resolves_aliases(tmp_path):
    w = np.array([[0.5, -1.0], [2.0, 0.25]], np.float32)
    scale = (127.0 / np.abs(w).max(axis=1)).astype(np.float32)
    q = np.rint(w * scale[:, None]).astype(np.int8)
    _write_ct2(
        tmp_path / "model.bin",
        {"a/weight": q, "a/weight_scale": scale, "b": np.ones(3, np.float16)},
        {"c": "b"},
    )
    spec, v = read_ct2_model(tmp_path / "model.bin")
    assert spec == "TestSpec"
    np.testing.assert_allclose(v["a/weight"], w, atol=0.01)
    assert v["c"].dtype == np.float16 and v["c"].tolist() == [1, 1, 1]


def test_bundled_model_converts_to_a_checkpoint_whisper_loads():
    import torch
    import whisper

    _, variables = read_ct2_model(bundled_model_dir() / "model.bin")
    dims = model_dims(variables)
    assert dims == {
        "n_mels": 80,
        "n_audio_ctx": 1500,
        "n_audio_state": 512,
        "n_audio_head": 8,
        "n_audio_layer": 6,
        "n_vocab": 51865,
        "n_text_ctx": 448,
        "n_text_state": 512,
        "n_text_head": 8,
        "n_text_layer": 6,
    }
    path, name = resolve_openai_model("bundled")
    assert name.startswith("whisper-base") and path.endswith(".pt")
    model = whisper.load_model(path, device="cpu")  # the checkpoint is a plain openai-whisper one
    sd = model.state_dict()
    fused = variables["encoder/layer_0/self_attention/linear_0/weight"].astype(np.float32)
    np.testing.assert_array_equal(sd["encoder.blocks.0.attn.key.weight"].numpy(), fused[512:1024])
    cross = variables["decoder/layer_5/attention/linear_1/bias"].astype(np.float32)
    np.testing.assert_array_equal(sd["decoder.blocks.5.cross_attn.value.bias"].numpy(), cross[512:])
    assert torch.equal(
        sd["decoder.token_embedding.weight"].half(),
        torch.from_numpy(variables["decoder/embeddings/weight"].copy()),
    )
    assert torch.load(path, weights_only=True)["alignment_heads"][0] == [3, 1]


# -- model look-up errors ---------------------------------------------------------------------


def test_openai_backend_missing_path_or_unknown_name_is_a_clear_error(tmp_path):
    with pytest.raises(WeightsError, match="neither a local file or folder nor an openai-whisper model name"):
        resolve_openai_model(str(tmp_path / "missing.pt"))
    with pytest.raises(WeightsError, match="no model.bin"):
        resolve_openai_model(str(tmp_path))


def test_openai_backend_offline_name_not_cached_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setenv("LIVEMOD_OFFLINE", "1")
    asr = AsrStage(AsrConfig(backend="openai-whisper", model="tiny"))
    with pytest.raises(WeightsError, match="'tiny' is not in .* downloads are off"):
        asr.setup()


def test_a_checkpoint_given_to_faster_whisper_says_which_backend_to_use(tmp_path):
    (tmp_path / "model.pt").write_bytes(b"x")
    with pytest.raises(WeightsError, match="--asr-backend openai-whisper"):
        resolve_model(str(tmp_path / "model.pt"))


@pytest.mark.parametrize("switch", ["HF_HUB_OFFLINE", "LIVEMOD_OFFLINE"])
def test_batch_with_a_missing_model_stops_with_one_line(tmp_path, monkeypatch, capsys, switch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv(switch, "1")
    code = main(["batch", str(CLIP), "--out", str(tmp_path), "--no-ray", "--asr-model", "no-such-model-xyz"])
    assert code == 2
    err = capsys.readouterr().err
    assert "asr.model" in err and "neither a local folder nor reachable" in err


def test_backend_and_batch_size_from_config_and_flag():
    c = load_config(overrides=["asr.backend=openai-whisper", "asr.batch_size=4"])
    assert c.asr.backend == "openai-whisper" and c.asr.batch_size == 4
    with pytest.raises(ConfigError, match="asr.backend"):
        load_config(overrides=["asr.backend=whisper.cpp"])
    with pytest.raises(ConfigError, match="asr.compute_type"):
        load_config(overrides=["asr.compute_type=int3"])
    from pipeline.cli import _config, build_parser

    args = build_parser().parse_args(["batch", "x.mp4", "--out", "o", "--asr-backend", "openai-whisper"])
    assert _config(args).asr.backend == "openai-whisper"


# -- batched decoding -------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["parallel", "batched"])
def test_batched_windows_give_the_same_transcripts(asr_stage, config, mode):
    """Each clip utterance in its own window, decoded one by one and then three at a time:
    side by side (``parallel``: every window decoded exactly as alone) or in one batch."""
    small = load_config(overrides=["asr.window_s=6", "asr.batch_size=3", f"asr.batch_mode={mode}"])
    windows = list(PrepareStage(small).process(str(CLIP)))[1:]
    assert len(windows) == 3
    one_stage = AsrStage(small.asr.model_copy(update={"batch_size": 1}))
    one_stage.setup()
    one_by_one = [one_stage.process(w) for w in windows]
    batched_stage = AsrStage(small.asr)
    batched_stage.setup()
    assert (batched_stage.backend.pool is not None) == (mode == "parallel")
    batched = batched_stage.process_many(windows)
    assert [len(x) for x in batched] == [len(x) for x in one_by_one]
    a = "".join(t.text for ts in one_by_one for t in ts)
    b = "".join(t.text for ts in batched for t in ts)
    if mode == "parallel":
        assert [[t.text for t in ts] for ts in batched] == [[t.text for t in ts] for ts in one_by_one]
    assert cer(a, b) <= 0.1, (a, b)
    for ts in batched:
        for t in ts:
            assert t.text and t.words
            for w in t.words:
                assert t.utterance.start - 1e-6 <= w.start <= w.end <= t.utterance.end + 1e-6


# -- the two backends agree -------------------------------------------------------------------

STREAM_SECONDS = 60.0  # the first two windows (53 s of speech): both backends in float32 take minutes


@pytest.mark.slow
def test_backends_agree_on_the_demo_stream(asr_stage, config, stream_truth):
    """Same weights, same precision (float32): character error rate between the backends'
    transcripts ≤ 2%, on the windows of the demo stream's first STREAM_SECONDS (openai-whisper
    and CTranslate2 float32 over all 190 s would take over ten minutes on 2 cores; there the
    bench measured 0.9%).  The default int8 differs from float32 a little more: ≤ 5% here."""
    windows = [
        w
        for w in list(PrepareStage(config).process(str(STREAM)))[1:]
        if w.utterances[-1].end <= STREAM_SECONDS
    ]
    assert sum(w.duration for w in windows) > 0.8 * STREAM_SECONDS
    texts = {}
    for name, update in {
        "openai": {"backend": "openai-whisper", "compute_type": "float32"},
        "fw32": {"backend": "faster-whisper", "compute_type": "float32"},
    }.items():
        stage = AsrStage(config.asr.model_copy(update=update))
        stage.setup()
        texts[name] = "".join(t.text for w in windows for t in stage.process(w))
    texts["fw8"] = "".join(t.text for w in windows for t in asr_stage.process(w))  # the default, int8
    assert cer(texts["fw32"], texts["openai"]) <= 0.02, texts
    assert cer(texts["fw8"], texts["openai"]) <= 0.05, texts
    truth = "".join(r["text"] for r in stream_truth if r["end"] <= windows[-1].utterances[-1].end + 0.5)
    for text in texts.values():
        assert cer(truth, text) <= 0.25


def test_local_runner_sends_windows_in_batches(tmp_path):
    """Batch mode without Ray, three one-utterance windows decoded in one batch."""
    out = tmp_path / "out"
    code = main(
        ["batch", str(CLIP), "--out", str(out), "--no-ray", "--no-clips", "--quiet"]
        + ["--set", "asr.window_s=6", "--set", "asr.batch_size=3", "--set", "output.report=false"]
    )
    assert code == 0
    (transcript,) = (out / "transcripts").glob("*.jsonl")
    rows = read_jsonl(transcript)
    assert len(rows) == 3 and all(r["text"] for r in rows)
    assert [r["start"] for r in rows] == sorted(r["start"] for r in rows)
    assert "国家领导人" in rows[2]["text"]
    assert read_jsonl(out / "violations.jsonl")


@pytest.mark.slow
def test_ray_driver_sends_windows_in_batches(tmp_path, ray_session):
    """The Ray driver batches a stream's windows too, with the records of one-by-one decoding."""
    runs = {}
    for size in (1, 3):
        out = tmp_path / f"out{size}"
        code = main(
            ["batch", str(CLIP), "--out", str(out), "--no-clips", "--quiet"]
            + ["--set", "asr.window_s=6", "--set", f"asr.batch_size={size}", "--set", "output.report=false"]
        )
        assert code == 0
        (transcript,) = (out / "transcripts").glob("*.jsonl")
        runs[size] = (
            [(r["start"], r["text"]) for r in read_jsonl(transcript)],
            sorted((v["id"], v["category"]) for v in read_jsonl(out / "violations.jsonl")),
        )
    assert len(runs[3][0]) == 3 and runs[3][1]
    # the same utterances and violations; batched beam search may pick a different near-homophone
    assert [start for start, _ in runs[3][0]] == [start for start, _ in runs[1][0]]
    assert cer("".join(t for _, t in runs[1][0]), "".join(t for _, t in runs[3][0])) <= 0.1
    assert runs[3][1] == runs[1][1]
