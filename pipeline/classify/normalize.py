"""Text normalisation with a map back to the original offsets.

Streamers dodge keyword lists (薇信, V信, 加 微 信, 加🌹微🌹信, traditional characters, 加加加),
and ASR writes numbers either way.  Matching runs on normalised text, but evidence must point
at what was really said, so every normalised character remembers the span of original
characters it came from.  Steps, in order:

1. traditional → simplified (OpenCC t2s), full → half width (NFKC), lower case, pinyin glosses
   that broken scrapers put after characters dropped (監(jiān)督 → 监督);
2. drop spaces, separators, emoji and symbols (clause punctuation stays: rules need it);
3. the variant table (``models/normalize.yaml``): evasion spellings → their word (V信 → 微信);
4. runs of three or more Chinese numerals → digits (幺三八 → 138);
5. a character repeated three or more times → once (加加加微信 → 加微信).
"""

from __future__ import annotations

import functools
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import ahocorasick
import yaml

from pipeline.asr.filters import to_simplified

# separators streamers put between characters; dropped like spaces
_SEPARATORS = set("-_·•*~|/\\^+='\"`#@&")
# clause punctuation is kept: context rules need clause boundaries, and terms never span them
CLAUSE_MARKS = set("，,。！!？?；;：:、…")
SENTENCE_MARKS = set("。！!？?；;")
_DROP_CATEGORIES = {"Zs", "Zl", "Zp", "Cc", "Cf", "So", "Sk", "Mn", "Me", "Co", "Cs"}
NUMERALS = {
    "零": "0",
    "〇": "0",
    "一": "1",
    "幺": "1",
    "二": "2",
    "两": "2",
    "三": "3",
    "四": "4",
    "五": "5",
    "六": "6",
    "七": "7",
    "八": "8",
    "九": "9",
}


@dataclass(frozen=True)
class Normalized:
    text: str  # the normalised text
    starts: tuple[int, ...]  # original span [starts[i], ends[i]) of normalised char i
    ends: tuple[int, ...]
    original: str

    def original_span(self, start: int, end: int) -> tuple[int, int]:
        """Original [start, end) covered by normalised [start, end)."""
        return self.starts[start], self.ends[end - 1]

    def contiguous(self, start: int, end: int) -> bool:
        """True when nothing but spaces between latin letters was dropped inside the span."""
        for i in range(start, end - 1):
            gap = self.original[self.ends[i] : self.starts[i + 1]]
            if gap and not (gap.isspace() and self.text[i].isascii() and self.text[i + 1].isascii()):
                return False
        return True


Chars = list[tuple[str, int, int]]  # (char, original start, original end)


# pinyin glossed after a character by broken scrapers: 監(jiān)督 → 監督
_PINYIN_GLOSS = re.compile(r"(?<=[\u3400-\u9fff])[(（][a-zü\u00c0-\u024f]{1,7}[)）]", re.IGNORECASE)


def _glossed(text: str) -> set[int]:
    return {i for m in _PINYIN_GLOSS.finditer(text) for i in range(m.start(), m.end())}


def _basic(text: str) -> Chars:
    skip = _glossed(text) if "(" in text or "（" in text else set()
    simplified = to_simplified(text)
    if len(simplified) != len(text):  # OpenCC phrase conversions can change length: go per char
        simplified = "".join(to_simplified(ch) or ch for ch in text)
    out: Chars = []
    for i, ch in enumerate(simplified):
        if i in skip:
            continue
        for c in unicodedata.normalize("NFKC", ch).lower():
            if c in _SEPARATORS or unicodedata.category(c) in _DROP_CATEGORIES:
                continue
            if c == "." and not (
                out and out[-1][0].isdigit() and i + 1 < len(text) and text[i + 1].isdigit()
            ):
                continue  # a dot between characters is a separator, between digits a decimal point
            out.append((c, i, i + 1))
    return out


def _numerals(chars: Chars) -> Chars:
    out: Chars = []
    i = 0
    while i < len(chars):
        j = i
        while j < len(chars) and chars[j][0] in NUMERALS:
            j += 1
        if j - i >= 3:  # a spoken number: phone, ID, bank card, price
            out += [(NUMERALS[c], s, e) for c, s, e in chars[i:j]]
            i = j
        else:
            out.append(chars[i])
            i += 1
    return out


def _repeats(chars: Chars) -> Chars:
    """A character said or typed three or more times in a row counts once (digits excepted)."""
    out: Chars = []
    i = 0
    while i < len(chars):
        j = i
        while j < len(chars) and chars[j][0] == chars[i][0]:
            j += 1
        if j - i >= 3 and not chars[i][0].isdigit():
            out.append((chars[i][0], chars[i][1], chars[j - 1][2]))
        else:
            out += chars[i:j]
        i = j
    return out


class VariantTable:
    """Evasion spellings → the word they stand for, applied longest first."""

    def __init__(self, mapping: dict[str, str]) -> None:
        self.mapping = {}
        for variant, word in mapping.items():
            key = "".join(c for c, _, _ in _basic(str(variant)))
            if key and key != word:
                self.mapping[key] = str(word)
        self._auto = ahocorasick.Automaton()
        for key, word in self.mapping.items():
            self._auto.add_word(key, (len(key), word))
        if self.mapping:
            self._auto.make_automaton()

    @classmethod
    def load(cls, path: Path | None) -> VariantTable:
        if path is None or not Path(path).is_file():
            return cls({})
        doc = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        mapping: dict[str, str] = {}
        for word, variants in (doc.get("variants") or {}).items():
            for v in variants or []:
                mapping[str(v)] = str(word)
        return cls(mapping)

    def apply(self, chars: Chars) -> Chars:
        if not self.mapping:
            return chars
        text = "".join(c for c, _, _ in chars)
        found = sorted(
            ((end - n + 1, end + 1, word) for end, (n, word) in self._auto.iter(text)),
            key=lambda m: (m[0], -(m[1] - m[0])),
        )
        out: Chars = []
        pos = 0
        for a, b, word in found:
            if a < pos:
                continue
            out += chars[pos:a]
            s, e = chars[a][1], chars[b - 1][2]
            out += [(w, s, e) for w in word]
            pos = b
        return out + chars[pos:]


class Normalizer:
    def __init__(self, table: VariantTable | None = None) -> None:
        self.table = table or VariantTable({})

    def __call__(self, text: str) -> Normalized:
        chars = _repeats(_numerals(self.table.apply(_basic(text))))
        return Normalized(
            "".join(c for c, _, _ in chars),
            tuple(s for _, s, _ in chars),
            tuple(e for _, _, e in chars),
            text,
        )


@functools.cache
def _plain() -> Normalizer:
    return Normalizer()


def normalize(text: str) -> Normalized:
    """Normalise without a variant table (steps 1, 2, 4 and 5)."""
    return _plain()(text)
