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
from pypinyin.seg.simpleseg import seg as pinyin_words

_CJK = re.compile(r"[\u3400-\u9fff]")
ANY_SYLLABLE_FROM = 5  # in terms this long, one wrong syllable need not even sound similar
_INITIALS = (("zh", "z"), ("ch", "c"), ("sh", "s"), ("n", "l"), ("f", "h"))


def syllables(text: str) -> list[str]:
    """One toneless pinyin syllable per character (other characters stand for themselves).

    ``lazy_pinyin(text)`` cuts ``text`` into words (runs of other characters, and words of its
    phrase dictionary or single characters within runs of Chinese) and reads each word on its
    own; the words are read here one by one, each once (``_word_syllables``), with the same
    result: most of an utterance's words were heard in earlier ones."""
    out = [syl for word in pinyin_words(text) for syl in _word_syllables(word)]
    if len(out) != len(text):  # pypinyin merged something unexpected: fall back to per char
        out = [lazy_pinyin(ch, errors=lambda c: list(c))[0] for ch in text]
    return out


@functools.lru_cache(maxsize=1 << 16)
def _word_syllables(word: str) -> tuple[str, ...]:
    """pypinyin's reading of one of its words (cut as it cuts them, so it reads it whole)."""
    return tuple(lazy_pinyin(word, errors=lambda chunk: list(chunk)))


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


def _key(sylls: list[str] | tuple[str, ...]) -> str:
    return "|" + "|".join(sylls) + "|"


def _positions(seq: tuple[str, ...]) -> tuple[str, dict[int, int]]:
    """The key string of ``seq``, and for each closing '|' the number of syllables before it."""
    key = _key(seq)
    ends: dict[int, int] = {}
    pos = 0
    for i, s in enumerate(seq):
        pos += 1 + len(s)
        ends[pos] = i + 1  # key[pos] is the '|' closing syllable i, where a match can end
    return key, ends


class Heard:
    """One text's syllables, toneless and fuzzy, with their key strings (``_positions``):
    worked out once per text (``heard``) for every index that listens to it, the lexicon's and
    the allow list's."""

    def __init__(self, text: str) -> None:
        self.sounds = sounds(text)  # (syllable, start, end) as ``sounds`` gives them
        self.toneless = tuple(s for s, _, _ in self.sounds)
        self.fuzzy = tuple(fuzzy(s) for s in self.toneless)
        self.toneless_key = _positions(self.toneless)
        self.fuzzy_key = _positions(self.fuzzy)


@functools.lru_cache(maxsize=256)  # as ``sounds``: a batch's worth
def heard(text: str) -> Heard:
    return Heard(text)


@dataclass(frozen=True)
class PhoneticHit:
    start: int  # character offsets in the text given to ``find``
    end: int
    payload: object
    kind: str  # phonetic | fuzzy | near


@dataclass(frozen=True)
class _NearTerm:
    """A term findable with one wrong syllable.  ``rank``: its place among such terms, times two
    (see ``PhoneticIndex._near``)."""

    fuzzy: tuple[str, ...]
    payload: object
    rank: int


class PhoneticIndex:
    """Aho-Corasick over pinyin keys: terms in, hits with character offsets out.

    Spelled by sound (``phonetic``, ``fuzzy``): one automaton each over '|'-joined syllables.
    One wrong syllable (``near``) leaves one half of the term intact.  For terms of four or more
    syllables an automaton over their halves finds the intact half, then the whole is checked.
    A three-syllable term has a one-syllable half, and a one-syllable key is heard everywhere;
    instead each of its three pairs (the syllables kept when the first, middle or last is wrong)
    is a key of a dictionary, and each pair of syllables in the text, adjacent or one apart, is
    looked up in it.  Near hits keep the order one automaton over every term's halves (first
    half ``fuzzy[:n // 2]``, second the rest) gave them, which callers see (evidence is listed
    in it): by where the intact half ends, the longer half first where two end together, then
    by term, a first half before a second.
    """

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
        # three-syllable terms by the pair they keep: (a, b) when the last is wrong, (b, c) when
        # the first is, (a, c) when the middle one is
        self._keep_first_two: dict[tuple[str, str], list[_NearTerm]] = {}
        self._keep_last_two: dict[tuple[str, str], list[_NearTerm]] = {}
        self._keep_ends: dict[tuple[str, str], list[_NearTerm]] = {}
        self._near_terms = 0
        for term, payload in terms:
            if not term or not all(_CJK.match(ch) for ch in term):
                continue
            sy = syllables(term)
            fz = tuple(fuzzy(s) for s in sy)
            exact.setdefault(_key(sy), []).append((len(sy), payload))
            if by_fuzzy:
                fuzz.setdefault(_key(fz), []).append((len(fz), payload))
            if near_min_syllables is not None and len(fz) >= near_min_syllables:
                near = _NearTerm(fz, payload, 2 * self._near_terms)
                self._near_terms += 1
                if len(fz) == 3:
                    self._keep_first_two.setdefault(fz[:2], []).append(near)
                    self._keep_last_two.setdefault(fz[1:], []).append(near)
                    self._keep_ends.setdefault(fz[::2], []).append(near)
                else:
                    k = len(fz) // 2
                    halves.setdefault(_key(fz[:k]), []).append((0, near))
                    halves.setdefault(_key(fz[k:]), []).append((k, near))
        for auto, table in ((self._exact, exact), (self._fuzzy, fuzz), (self._halves, halves)):
            for key, items in table.items():
                auto.add_word(key, (key.count("|") - 1, items))
            if table:
                auto.make_automaton()
        self._has = {"exact": bool(exact), "fuzzy": bool(fuzz), "halves": bool(halves)}

    def find(self, text: str) -> list[PhoneticHit]:
        """Terms heard in ``text``; hit offsets are character offsets into ``text``."""
        h = heard(text)
        spans: dict[tuple[int, int, int], tuple[object, str]] = {}  # syllable span → (payload, kind)
        for kind, auto, has in (("phonetic", self._exact, "exact"), ("fuzzy", self._fuzzy, "fuzzy")):
            if not self._has[has]:
                continue
            key, ends = h.toneless_key if kind == "phonetic" else h.fuzzy_key
            for last, (n, items) in auto.iter(key):
                end_syl = ends.get(last)
                if end_syl is not None:
                    for _, payload in items:
                        spans.setdefault((end_syl - n, end_syl, id(payload)), (payload, kind))
        if self._near_terms:
            for s, e, payload in self._near(h, spans):
                spans.setdefault((s, e, id(payload)), (payload, "near"))
        heard_at = h.sounds
        return [
            PhoneticHit(heard_at[s][1], heard_at[e - 1][2], payload, kind)
            for (s, e, _), (payload, kind) in spans.items()
        ]

    def _near(self, h: Heard, spans: dict) -> list[tuple[int, int, object]]:
        """Syllable spans ``(start, end, payload)`` of terms heard with one wrong syllable (and
        not already in ``spans``), in the order the class docstring gives; a span can repeat."""
        fz = h.fuzzy
        found: list[tuple[tuple[int, int, int], int, int, object]] = []  # (order, start, end, payload)

        def check(term: _NearTerm, s: int, wrong: int) -> None:
            n = len(term.fuzzy)
            said = fz[s + wrong]
            if said == term.fuzzy[wrong] or (s, s + n, id(term.payload)) in spans:
                return
            inner = 0 < wrong < n - 1  # the ends of a term carry its meaning (出售, 走私)
            if similar(term.fuzzy[wrong], said) or (n >= ANY_SYLLABLE_FROM and inner):
                k = n // 2  # where the halves meet: the first is intact if the wrong one is past it
                order = (s + k, -k, term.rank) if wrong >= k else (s + n, k - n, term.rank + 1)
                found.append((order, s, s + n, term.payload))

        if self._has["halves"]:
            key, ends = h.fuzzy_key
            for last, (n, items) in self._halves.iter(key):
                end_syl = ends.get(last)
                if end_syl is None:
                    continue
                for offset, term in items:
                    s = end_syl - n - offset
                    e = s + len(term.fuzzy)
                    if s < 0 or e > len(fz):
                        continue
                    other = range(n, len(term.fuzzy)) if offset == 0 else range(offset)
                    diffs = [i for i in other if term.fuzzy[i] != fz[s + i]]
                    if len(diffs) == 1:
                        check(term, s, diffs[0])
        if self._keep_first_two and len(fz) >= 3:
            # the pairs a three-syllable window starting at s keeps, by the syllable left out
            for table, wrong, pairs in (
                (self._keep_first_two, 2, zip(fz, fz[1:-1])),
                (self._keep_last_two, 0, zip(fz[1:-1], fz[2:])),
                (self._keep_ends, 1, zip(fz, fz[2:])),
            ):
                for s, kept in enumerate(pairs):
                    if kept in table:
                        for term in table[kept]:
                            check(term, s, wrong)
        found.sort(key=lambda f: f[0])
        return [(s, e, payload) for _, s, e, payload in found]
