"""Character error rate: how far a transcript is from a reference, character by character.

Both texts are normalised first: traditional → simplified (OpenCC t2s), full-width →
half-width, lower case, and everything that is not a letter or digit (punctuation, spaces)
dropped, so only the words count.  CER = Levenshtein distance / reference length.
"""

from __future__ import annotations

import unicodedata

from pipeline.asr.filters import to_simplified


def normalize(text: str) -> str:
    text = unicodedata.normalize("NFKC", to_simplified(text)).lower()
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
