from pathlib import Path

import pytest

from pipeline.cli import main
from pipeline.config import ConfigError, load_config


def test_default_config_loads_and_resolves_lexicon_dir():
    c = load_config()
    assert c.asr.language == "zh"
    assert c.classifier.lexicon_dir.is_dir()
    assert any(c.classifier.lexicon_dir.glob("*.yaml"))


def test_override_changes_typed_value():
    c = load_config(overrides=["asr.beam_size=2", "clips.enabled=false"])
    assert c.asr.beam_size == 2 and c.clips.enabled is False


@pytest.mark.parametrize(
    "override, key",
    [
        ("asr.beam_size=0", "asr.beam_size"),
        ("vad.threshold=abc", "vad.threshold"),
        ("asr.compute_typo=int8", "asr.compute_typo"),
        ("ray.max_inflight_windows=-1", "ray.max_inflight_windows"),
    ],
)
def test_bad_value_is_one_line_naming_the_key(override, key):
    with pytest.raises(ConfigError) as err:
        load_config(overrides=[override])
    message = str(err.value)
    assert key in message and "\n" not in message


def test_bad_config_file(tmp_path: Path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("asr:\n  device: tpu\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"asr\.device"):
        load_config(bad)
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml")


def test_relative_paths_resolve_against_config_file(tmp_path: Path):
    (tmp_path / "lex").mkdir()
    cfg = tmp_path / "my.yaml"
    cfg.write_text("classifier:\n  lexicon_dir: lex\n", encoding="utf-8")
    assert load_config(cfg).classifier.lexicon_dir == (tmp_path / "lex").resolve()


def test_cli_reports_config_error_with_exit_2(capsys, tmp_path):
    code = main(["batch", "x.mp4", "--out", str(tmp_path), "--set", "asr.beam_size=0"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("config error:") and "asr.beam_size" in err and err.count("\n") == 1


def test_only_faster_whisper_decodes_windows_side_by_side():
    """openai-whisper's decoder hangs per-call caches on the shared model: one window at a time,
    in the local runner and in a Ray ASR actor alike (no max_concurrency)."""
    asr = load_config().asr
    assert (asr.backend, asr.batch_mode, asr.side_by_side, asr.windows_per_call) == (
        "faster-whisper",
        "parallel",
        2,
        1,
    )
    openai = asr.model_copy(update={"backend": "openai-whisper"})
    assert (openai.side_by_side, openai.windows_per_call) == (1, 1)
    batched = asr.model_copy(update={"batch_mode": "batched", "batch_size": 4})
    assert (batched.side_by_side, batched.windows_per_call) == (1, 4)
