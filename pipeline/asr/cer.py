"""Character error rate: how far a transcript is from a reference, character by character.

Both texts are normalised first: traditional → simplified (OpenCC t2s), full-width →
half-width, Arabic numerals read out in Chinese the way the demo scripts spell them (1999 →
一千九百九十九, 50% → 百分之五十; the same rule as ``scripts/make_asr_corpus.py``), lower case,
and everything that is not a letter or digit (punctuation, spaces) dropped, so only the words
count.  CER = Levenshtein distance / reference length.
"""

from __future__ import annotations

import re
import unicodedata

from pipeline.asr.filters import to_simplified

_DIGITS = "零一二三四五六七八九"


def int_to_chinese(n: int) -> str:
    """An integer read out in Chinese (一千九百九十九, 二十, 一万五千)."""
    if n == 0:
        return "零"
    for big, unit in ((10**8, "亿"), (10**4, "万")):
        if n >= big:
            rest = n % big
            tail = ("零" if rest < big // 10 else "") + int_to_chinese(rest) if rest else ""
            return int_to_chinese(n // big) + unit + tail
    out, zero = "", False
    for unit, div in (("千", 1000), ("百", 100), ("十", 10), ("", 1)):
        d = n // div % 10
        if d:
            if zero and out:
                out += "零"
            out += ("" if (unit == "十" and d == 1 and not out) else _DIGITS[d]) + unit
            zero = False
        elif out:
            zero = True
    return out


def numbers_to_chinese(text: str) -> str:
    """Arabic numerals → Chinese characters (2.5 → 二点五, 50% → 百分之五十)."""

    def number(m: re.Match) -> str:
        whole, _, frac = m.group(0).replace(",", "").partition(".")
        out = int_to_chinese(int(whole)) if len(whole) < 13 else "".join(_DIGITS[int(c)] for c in whole)
        return out + ("点" + "".join(_DIGITS[int(c)] for c in frac) if frac else "")

    text = re.sub(r"(\d+(?:\.\d+)?)\s*%", lambda m: "百分之" + numbers_to_chinese(m.group(1)), text)
    return re.sub(r"\d[\d,]*(?:\.\d+)?", number, text)


def normalize(text: str) -> str:
    text = numbers_to_chinese(unicodedata.normalize("NFKC", to_simplified(text))).lower()
    return "".join(ch for ch in text if ch.isalnum())


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance (insertions, deletions, substitutions all cost 1)."""
    if len(a) < len(b):
        a, b = b, a
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def cer(reference: str, hypothesis: str) -> float:
    """Character error rate of ``hypothesis`` against ``reference`` (0.0 is a perfect match)."""
    ref, hyp = normalize(reference), normalize(hypothesis)
    if not ref:
        return 0.0 if not hyp else 1.0
    return edit_distance(ref, hyp) / len(ref)
