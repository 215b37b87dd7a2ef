"""Text normalisation with a map back to the original offsets.

Matching runs on normalised text (simplified, half-width, lower-case, without spaces and
separators), but evidence must point at what was really said, so every normalised character
remembers the offset of the original character it came from.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

from pipeline.asr.filters import to_simplified

# characters dropped entirely: spaces and the separators streamers put between characters
_SEPARATORS = set(" \t\r\n\u3000\u200b\u200c\u200d\ufeff-_.·•*~|/\\^+='\"`")
# clause punctuation is kept: context rules need clause boundaries, and terms never span them
CLAUSE_MARKS = set("，,。！!？?；;：:、…")
SENTENCE_MARKS = set("。！!？?；;")


@dataclass(frozen=True)
class Normalized:
    text: str  # the normalised text
    index: tuple[int, ...]  # index[i] = offset in the original of normalised char i
    original: str

    def original_span(self, start: int, end: int) -> tuple[int, int]:
        """Original [start, end) covered by normalised [start, end)."""
        return self.index[start], self.index[end - 1] + 1


def normalize(text: str) -> Normalized:
    """Simplified, NFKC (full → half width), lower-case, separators removed."""
    chars: list[str] = []
    index: list[int] = []
    simplified = to_simplified(text)
    if len(simplified) != len(text):  # OpenCC phrase conversions can change length: go per char
        simplified = "".join(to_simplified(ch) or ch for ch in text)
    for i, ch in enumerate(simplified):
        for out in unicodedata.normalize("NFKC", ch).lower():
            if out in _SEPARATORS or unicodedata.category(out) in ("Cf", "Zs"):
                continue
            chars.append(out)
            index.append(i)
    return Normalized("".join(chars), tuple(index), text)
