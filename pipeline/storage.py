"""Inputs on shared storage: plain paths (a mount every node has at the same place) or fsspec
URLs (``s3://``, ``gs://``, ``az://``, ``file://`` ...).

ffmpeg reads paths and its own network protocols (http, rtmp, ...) directly.  Any other URL is
read through fsspec: the object is copied once into a local cache on the node that needs it
(``$LIVEMOD_INPUT_CACHE``, default ``~/.cache/livemod/inputs``), keyed by URL, size and
modification stamp, and that copy is decoded and cut into clips.  Protocol packages (s3fs,
gcsfs, adlfs ...) are not dependencies: install the one your storage needs on every node.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

from pipeline.media import MediaError

# read by ffmpeg itself
FFMPEG_SCHEMES = {"http", "https", "rtmp", "rtmps", "rtsp", "rtsps", "srt", "tcp", "udp", "hls", "rtp"}


def is_fsspec_url(source: str) -> bool:
    scheme, sep, _ = source.partition("://")
    return bool(sep) and scheme.lower() not in FFMPEG_SCHEMES


def cache_dir() -> Path:
    return Path(os.environ.get("LIVEMOD_INPUT_CACHE") or Path.home() / ".cache" / "livemod" / "inputs")


def local_path(source: str) -> str:
    """A path ffmpeg can read for ``source``: itself, or a local copy of an fsspec URL.
    Raises MediaError with a one-line reason when the URL cannot be read from this machine."""
    if not is_fsspec_url(source):
        return source
    try:
        import fsspec

        fs, path = fsspec.core.url_to_fs(source)
        info = fs.info(path)
    except ImportError as exc:  # e.g. s3:// without s3fs
        raise MediaError(f"cannot read {source}: {exc}") from exc
    except FileNotFoundError:
        raise MediaError(f"cannot read {source}: not found from {os.uname().nodename}") from None
    except Exception as exc:  # credentials, network, unknown protocol
        raise MediaError(f"cannot read {source}: {type(exc).__name__}: {str(exc)[:200]}") from exc
    if info.get("type") == "directory":
        raise MediaError(f"{source}: a folder; give the files in it")
    stamp = info.get("mtime") or info.get("LastModified") or info.get("ETag") or info.get("etag") or ""
    key = hashlib.sha1(f"{source}\x1f{info.get('size')}\x1f{stamp}".encode()).hexdigest()[:16]
    dst = cache_dir() / key / (Path(path).name or "input")
    if dst.exists():
        return str(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dst.parent, prefix=".part-")
    os.close(fd)
    try:
        fs.get_file(path, tmp)
        os.replace(tmp, dst)
    except Exception as exc:
        Path(tmp).unlink(missing_ok=True)
        raise MediaError(f"cannot read {source}: {type(exc).__name__}: {str(exc)[:200]}") from exc
    return str(dst)
