"""Phonetic matching: find lexicon terms by how they sound, not how ASR spelled them.

Whisper writes what it hears with whatever characters fit: 包治百病 → 包制摆病, 象牙 → 向牙,
弹弓枪 → 但公枪.  The sound survives, so terms are also matched on a toneless-pinyin
projection of the text (``phonetic``), on a fuzzy projection that merges the confusions
Mandarin ASR and accents really make (z/zh, c/ch, s/sh, n/l, f/h, -n/-ng: ``fuzzy``), and,
for terms of three or more syllables, with one wrong but similar-sounding syllable (for
terms of five or more, any syllable but the first and last: ``near``; the classifier takes a
three-syllable one only when its model agrees).  Each step away from the spelling scores lower.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

import ahocorasick
from pypinyin import lazy_pinyin

_CJK = re.compile(r"[\u3400-\u9fff]")
ANY_SYLLABLE_FROM = 5  # in terms this long, one wrong syllable need not even sound similar
_INITIALS = (("zh", "z"), ("ch", "c"), ("sh", "s"), ("n", "l"), ("f", "h"))


def syllables(text: str) -> list[str]:
    """One toneless pinyin syllable per character (other characters stand for themselves)."""
    out = lazy_pinyin(text, errors=lambda chunk: list(chunk))
    if len(out) != len(text):  # pypinyin merged something unexpected: fall back to per char
        out = [lazy_pinyin(ch, errors=lambda c: list(c))[0] for ch in text]
    return out


@functools.cache
def _pinyin_syllables() -> frozenset[str]:
    return frozenset(lazy_pinyin("".join(map(chr, range(0x4E00, 0x9FA6)))))


def _split_pinyin(run: str) -> list[str] | None:
    """'weixin' → ['wei', 'xin'] (greedy, longest syllable first); None if it is not pinyin."""
    valid, out, i = _pinyin_syllables(), [], 0
    while i < len(run):
        for n in range(min(6, len(run) - i), 0, -1):
            if run[i : i + n] in valid:
                out.append(run[i : i + n])
                i += n
                break
        else:
            return None
    return out


@functools.lru_cache(maxsize=256)  # a batch's worth: the same utterance is heard up to three times
def sounds(text: str) -> tuple[tuple[str, int, int], ...]:
    """Syllables of ``text`` with the character span each covers.  A run of latin letters
    that spells pinyin (weixin, wei xin once spaces are gone) becomes its syllables, so
    evaders who write Chinese words in pinyin are heard like everyone else.  The model's
    character and n-gram readers hear each utterance of a batch one after the other."""
    sy = syllables(text)
    out: list[tuple[str, int, int]] = []
    i = 0
    while i < len(text):
        if "a" <= text[i] <= "z":
            j = i
            while j < len(text) and "a" <= text[j] <= "z":
                j += 1
            parts = _split_pinyin(text[i:j]) if j - i >= 2 else None
            if parts:
                pos = i
                for k, part in enumerate(parts):
                    end = j if k == len(parts) - 1 else pos + len(part)
                    out.append((part, pos, end))
                    pos = end
                i = j
                continue
        out.append((sy[i], i, i + 1))
        i += 1
    return tuple(out)


@functools.cache
def fuzzy(syllable: str) -> str:
    """Merge the initials and finals Mandarin ASR confuses: zh→z, ch→c, sh→s, n→l, f→h, -ng→-n."""
    for a, b in _INITIALS:
        if syllable.startswith(a):
            syllable = b + syllable[len(a) :]
            break
    return syllable[:-1] if syllable.endswith("ng") else syllable


@functools.cache
def similar(a: str, b: str) -> bool:
    """Two fuzzy syllables that ASR could plausibly swap: same initial or same final."""
    if a == b:
        return True
    if not (a.isalpha() and b.isalpha()):
        return False
    ia, ib = re.match(r"[^aeiouv]*", a)[0], re.match(r"[^aeiouv]*", b)[0]
    return (ia == ib and ia != "") or a[len(ia) :] == b[len(ib) :]


def _key(sylls: list[str]) -> str:
    return "|" + "|".join(sylls) + "|"


@dataclass(frozen=True)
class PhoneticHit:
    start: int  # character offsets in the text given to ``find``
    end: int
    payload: object
    kind: str  # phonetic | fuzzy | near


class PhoneticIndex:
    """Aho-Corasick over pinyin keys: terms in, hits with character offsets out."""

    def __init__(
        self, terms: list[tuple[str, object]], near_min_syllables: int | None = 3, by_fuzzy: bool = True
    ) -> None:
        """``by_fuzzy``: also find terms by fuzzy pinyin; ``near_min_syllables``: terms this long
        are also found with one wrong syllable (None: never).  Without both, only by toneless
        pinyin, every syllable the term's."""
        self._exact = ahocorasick.Automaton()
        self._fuzzy = ahocorasick.Automaton()
        self._halves = ahocorasick.Automaton()
        exact: dict[str, list] = {}
        fuzz: dict[str, list] = {}
        halves: dict[str, list] = {}
        for term, payload in terms:
            if not term or not all(_CJK.match(ch) for ch in term):
                continue
            sy = syllables(term)
            fz = [fuzzy(s) for s in sy]
            exact.setdefault(_key(sy), []).append((len(sy), payload))
            if by_fuzzy:
                fuzz.setdefault(_key(fz), []).append((len(fz), payload))
            if near_min_syllables is not None and len(fz) >= near_min_syllables:
                k = len(fz) // 2
                # one wrong syllable leaves one half intact: find halves, then verify the whole
                halves.setdefault(_key(fz[:k]), []).append((0, fz, payload))
                halves.setdefault(_key(fz[k:]), []).append((k, fz, payload))
        for auto, table in ((self._exact, exact), (self._fuzzy, fuzz), (self._halves, halves)):
            for key, items in table.items():
                auto.add_word(key, (key.count("|") - 1, items))
            if table:
                auto.make_automaton()
        self._has = {"exact": bool(exact), "fuzzy": bool(fuzz), "halves": bool(halves)}

    def find(self, text: str) -> list[PhoneticHit]:
        """Terms heard in ``text``; hit offsets are character offsets into ``text``."""
        heard = sounds(text)
        sy = [s for s, _, _ in heard]
        fz = [fuzzy(s) for s in sy] if self._has["fuzzy"] or self._has["halves"] else []
        spans: dict[tuple[int, int], tuple[object, str]] = {}  # syllable span → (payload, kind)
        for kind, auto, seq in (("phonetic", self._exact, sy), ("fuzzy", self._fuzzy, fz)):
            if not self._has["exact" if kind == "phonetic" else "fuzzy"]:
                continue
            key, ends = _positions(seq)
            for last, (n, items) in auto.iter(key):
                end_syl = ends.get(last)
                if end_syl is not None:
                    for _, payload in items:
                        spans.setdefault((end_syl - n, end_syl, id(payload)), (payload, kind))
        if self._has["halves"]:
            key, ends = _positions(fz)
            for last, (n, items) in self._halves.iter(key):
                end_syl = ends.get(last)
                if end_syl is None:
                    continue
                for offset, term, payload in items:
                    s = end_syl - n - offset
                    e = s + len(term)
                    if s < 0 or e > len(fz) or (s, e, id(payload)) in spans:
                        continue
                    diffs = [i for i in range(len(term)) if term[i] != fz[s + i]]
                    if len(diffs) != 1:
                        continue
                    k = diffs[0]
                    inner = 0 < k < len(term) - 1  # the ends of a term carry its meaning (出售, 走私)
                    if similar(term[k], fz[s + k]) or (len(term) >= ANY_SYLLABLE_FROM and inner):
                        spans[(s, e, id(payload))] = (payload, "near")
        return [
            PhoneticHit(heard[s][1], heard[e - 1][2], payload, kind)
            for (s, e, _), (payload, kind) in spans.items()
        ]


def _positions(seq: list[str]) -> tuple[str, dict[int, int]]:
    """The key string of ``seq``, and for each closing '|' the number of syllables before it."""
    key = _key(seq)
    ends: dict[int, int] = {}
    pos = 0
    for i, s in enumerate(seq):
        pos += 1 + len(s)
        ends[pos] = i + 1  # key[pos] is the '|' closing syllable i, where a match can end
    return key, ends
