"""A CTranslate2 Whisper model (``model.bin``) → an openai-whisper checkpoint (``.pt``).

``model.bin`` is written by CTranslate2's ``ModelSpec._serialize``
(``ctranslate2/specs/model_spec.py``), all little-endian::

    u32 binary version, str spec name, u32 spec revision, u32 variable count
    per variable: str name, u8 rank, u32 × rank shape, u8 dtype id, u32 byte count, raw bytes
    u32 alias count, per alias: str alias, str variable name
    str: u16 length (with the closing NUL), UTF-8 bytes, NUL

dtype ids: 0 float32, 1 int8, 2 int16, 3 int32, 4 float16, 5 bfloat16.  A quantized weight
``…/weight`` (int8 or int16) has a ``…/weight_scale`` beside it: float = int / scale, per row.

CTranslate2's Whisper converter (``converters/transformers.py``, ``WhisperLoader``) fuses
attention projections: self-attention ``linear_0`` is [query; key; value], cross-attention
``linear_0`` is the query and ``linear_1`` [key; value]; the key projection has no bias in
Whisper, so its part of the fused bias is zero and is dropped here.  The remaining names map
one to one onto openai-whisper's ``Whisper`` module (``whisper/model.py``).
"""

from __future__ import annotations

import json
import logging
import os
import re
import struct
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

_DTYPES = ("float32", "int8", "int16", "int32", "float16", "bfloat16")


class ConversionError(ValueError):
    """The file is not a CTranslate2 Whisper model this converter understands."""


def read_ct2_model(path: str | Path) -> tuple[str, dict[str, np.ndarray]]:
    """Read ``model.bin``: (spec name, {variable name: array}), aliases resolved, int8 dequantized."""
    data = memoryview(Path(path).read_bytes())
    pos = 0

    def unpack(fmt: str):
        nonlocal pos
        value = struct.unpack_from("<" + fmt, data, pos)[0]
        pos += struct.calcsize("<" + fmt)
        return value

    def string() -> str:
        nonlocal pos
        n = unpack("H")
        text = bytes(data[pos : pos + n - 1]).decode("utf-8")
        pos += n
        return text

    version = unpack("I")
    if version < 5 or version > 6:
        raise ConversionError(f"{path}: CTranslate2 binary version {version} is not supported (5 or 6)")
    spec = string()
    unpack("I")  # spec revision
    variables: dict[str, np.ndarray] = {}
    for _ in range(unpack("I")):
        name = string()
        shape = tuple(unpack("I") for _ in range(unpack("B")))
        dtype = _DTYPES[unpack("B")]
        nbytes = unpack("I")
        raw = data[pos : pos + nbytes]
        pos += nbytes
        if dtype == "bfloat16":  # the upper half of a float32
            arr = (np.frombuffer(raw, np.uint16).astype(np.uint32) << 16).view(np.float32)
        else:
            arr = np.frombuffer(raw, dtype)
        variables[name] = arr.reshape(shape)
    for _ in range(unpack("I")):
        alias, target = string(), string()
        variables[alias] = variables[target]
    for name in [n for n in variables if n.endswith("_scale")]:
        base = name[: -len("_scale")]
        if base in variables and variables[base].dtype in (np.int8, np.int16):
            scale = variables[name].astype(np.float32)
            w = variables[base].astype(np.float32)
            scale = scale.reshape(-1, *([1] * (w.ndim - 1))) if scale.ndim else scale
            variables[base] = w / scale
    return spec, variables


def _split(name: str, arr: np.ndarray, parts: list[str | None]) -> dict[str, np.ndarray]:
    """A fused projection (rows stacked) → its pieces; ``None`` marks a piece to drop."""
    chunks = np.split(arr, len(parts), axis=0)
    return {p: c for p, c in zip(parts, chunks) if p is not None}


def _map_layer(side: str, i: int, rest: str, arr: np.ndarray) -> dict[str, np.ndarray]:
    block = f"{side}.blocks.{i}"
    m = re.fullmatch(r"(self_attention|attention|ffn)/(layer_norm|linear_(\d))/(\w+)", rest)
    if not m:
        raise ConversionError(f"unexpected variable {side}/layer_{i}/{rest}")
    part, sub, k, field = m.group(1), m.group(2), m.group(3), m.group(4)
    if sub == "layer_norm":
        ln = {"self_attention": "attn_ln", "attention": "cross_attn_ln", "ffn": "mlp_ln"}[part]
        return {f"{block}.{ln}.{'weight' if field == 'gamma' else 'bias'}": arr}
    k = int(k)
    if part == "ffn":
        return {f"{block}.mlp.{0 if k == 0 else 2}.{field}": arr}
    attn = "attn" if part == "self_attention" else "cross_attn"
    if part == "self_attention":
        names = [["query", "key", "value"], ["out"]][k]
    else:
        names = [["query"], ["key", "value"], ["out"]][k]
    if field == "bias":
        parts = [None if n == "key" else f"{block}.{attn}.{n}.bias" for n in names]
    else:
        parts = [f"{block}.{attn}.{n}.weight" for n in names]
    return _split(rest, arr, parts)


def ct2_to_openai_state(variables: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """CTranslate2 Whisper variable names → openai-whisper state dict names."""
    direct = {
        "encoder/conv1/weight": "encoder.conv1.weight",
        "encoder/conv1/bias": "encoder.conv1.bias",
        "encoder/conv2/weight": "encoder.conv2.weight",
        "encoder/conv2/bias": "encoder.conv2.bias",
        "encoder/position_encodings/encodings": "encoder.positional_embedding",
        "encoder/layer_norm/gamma": "encoder.ln_post.weight",
        "encoder/layer_norm/beta": "encoder.ln_post.bias",
        "decoder/embeddings/weight": "decoder.token_embedding.weight",
        "decoder/position_encodings/encodings": "decoder.positional_embedding",
        "decoder/layer_norm/gamma": "decoder.ln.weight",
        "decoder/layer_norm/beta": "decoder.ln.bias",
    }
    state: dict[str, np.ndarray] = {}
    for name, arr in variables.items():
        if arr.ndim == 0 or name == "decoder/projection/weight":  # scalars; tied to the embeddings
            continue
        if name in direct:
            state[direct[name]] = arr
            continue
        m = re.fullmatch(r"(encoder|decoder)/layer_(\d+)/(.+)", name)
        if not m:
            raise ConversionError(f"unexpected variable {name}")
        state.update(_map_layer(m.group(1), int(m.group(2)), m.group(3), arr))
    return state


def _layers(variables: dict[str, np.ndarray], side: str) -> int:
    found = {int(m.group(1)) for n in variables if (m := re.match(rf"{side}/layer_(\d+)/", n))}
    return max(found) + 1 if found else 0


def model_dims(variables: dict[str, np.ndarray]) -> dict[str, int]:
    """openai-whisper's ``ModelDimensions`` from the variables' shapes and head counts."""
    return {
        "n_mels": int(variables["encoder/conv1/weight"].shape[1]),
        "n_audio_ctx": int(variables["encoder/position_encodings/encodings"].shape[0]),
        "n_audio_state": int(variables["encoder/conv1/weight"].shape[0]),
        "n_audio_head": int(variables["encoder/num_heads"]),
        "n_audio_layer": _layers(variables, "encoder"),
        "n_vocab": int(variables["decoder/embeddings/weight"].shape[0]),
        "n_text_ctx": int(variables["decoder/position_encodings/encodings"].shape[0]),
        "n_text_state": int(variables["decoder/embeddings/weight"].shape[1]),
        "n_text_head": int(variables["decoder/num_heads"]),
        "n_text_layer": _layers(variables, "decoder"),
    }


def convert(model_dir: str | Path, output: str | Path, dtype: str = "float16") -> Path:
    """Write an openai-whisper checkpoint for the CTranslate2 Whisper model in ``model_dir``.

    The checkpoint holds ``dims``, ``model_state_dict`` and, from the model's ``config.json``,
    ``alignment_heads`` (the cross-attention heads used for word timestamps), which
    :func:`pipeline.asr.openai_whisper.load_checkpoint` applies.  ``whisper.load_model(path)``
    and the ``whisper`` CLI (``--model path``) read the file as it is.
    """
    import torch

    model_dir, output = Path(model_dir), Path(output)
    spec, variables = read_ct2_model(model_dir / "model.bin")
    if spec != "WhisperSpec":
        raise ConversionError(f"{model_dir}: a {spec}, not a Whisper model")
    dims = model_dims(variables)
    state = ct2_to_openai_state(variables)
    # check against the real module: every key present, every shape right
    from whisper.model import ModelDimensions, Whisper

    expected = Whisper(ModelDimensions(**dims)).state_dict()
    missing = sorted(set(expected) - set(state))
    extra = sorted(set(state) - set(expected))
    if missing or extra:
        raise ConversionError(f"state dict mismatch: missing {missing[:5]}, unexpected {extra[:5]}")
    for k, v in expected.items():
        if tuple(v.shape) != state[k].shape:
            raise ConversionError(f"{k}: shape {state[k].shape}, expected {tuple(v.shape)}")
    tdtype = {"float16": torch.float16, "float32": torch.float32}[dtype]
    checkpoint = {
        "dims": dims,
        "model_state_dict": {
            k: torch.from_numpy(np.array(v, np.float32)).to(tdtype) for k, v in state.items()
        },
    }
    config = model_dir / "config.json"
    if config.is_file():
        heads = json.loads(config.read_text()).get("alignment_heads")
        if heads:
            checkpoint["alignment_heads"] = [[int(a), int(b)] for a, b in heads]
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(f"{output.name}.{os.getpid()}.tmp")
    torch.save(checkpoint, tmp)
    tmp.replace(output)
    return output
