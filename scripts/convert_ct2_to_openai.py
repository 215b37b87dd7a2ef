"""Convert a CTranslate2 Whisper model folder into an openai-whisper checkpoint (.pt).

    python scripts/convert_ct2_to_openai.py                      # the bundled base model → the cache
    python scripts/convert_ct2_to_openai.py MODEL_DIR -o out.pt  # any CTranslate2 Whisper folder

The checkpoint loads with ``whisper.load_model("out.pt")``, runs with the ``whisper`` CLI
(``whisper audio.wav --model out.pt``) and with ``livemod batch --asr-backend openai-whisper
--asr-model out.pt``.  The file format and the name mapping are described in
``pipeline/asr/convert.py``.  The openai-whisper backend converts the bundled model on its
first use by itself; this script is for doing it ahead of time or for other models.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipeline.asr.convert import convert  # noqa: E402
from pipeline.asr.weights import bundled_model_dir, openai_checkpoint_for  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "model_dir", nargs="?", help="CTranslate2 Whisper folder (default: the bundled base model)"
    )
    p.add_argument("-o", "--output", help="checkpoint to write (default: in the livemod cache)")
    p.add_argument("--dtype", choices=["float16", "float32"], default="float16", help="weights in the file")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    src = Path(args.model_dir) if args.model_dir else bundled_model_dir()
    out = convert(src, args.output, args.dtype) if args.output else openai_checkpoint_for(src)
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
