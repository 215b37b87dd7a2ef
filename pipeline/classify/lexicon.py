"""The lexicon: YAML files of terms per subcategory, matched with Aho-Corasick.

Each file covers one category (see ``models/lexicon/README.md`` for the schema).  Users add
their own files (``classifier.user_lexicons``): entries with a new id add terms, entries with
an existing id replace them, ``disable: [id, ...]`` removes entries, and ``allow: [phrase, ...]``
lists phrases that cancel any match they cover, as spelled or as heard (an allow-listed phrase
of four or more characters also counts where its syllables are said in other characters:
Whisper's 支持专闺验货 is the allow-listed 支持专柜验货).
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import ahocorasick
import yaml

from pipeline.classify.amounts import price_ratio
from pipeline.classify.normalize import Normalizer
from pipeline.classify.phonetic import PhoneticIndex
from pipeline.classify.taxonomy import CATEGORIES, SEVERITIES

ALLOW_BY_SOUND_MIN = 4  # shorter allow-listed phrases count only as spelled: too many sound alike


class LexiconError(ValueError):
    """A lexicon file that does not follow the schema; the message names file and key."""


@dataclass(frozen=True)
class Subcategory:
    category: str
    name: str
    severity: str
    basis: str
    description: str = ""

    @property
    def code(self) -> str:
        return f"{self.category}.{self.name}"


@dataclass(frozen=True)
class Entry:
    id: str
    term: str
    sub: Subcategory
    variants: tuple[str, ...] = ()
    exceptions: tuple[str, ...] = ()
    requires_any: tuple[str, ...] = ()
    max_price_ratio: float | None = None  # a reference price counts only for a cut this deep or deeper
    weight: float = 1.0
    source: str = ""  # file it came from
    user: bool = False  # from the user's own files (classifier.user_lexicons): the model never drops it


@dataclass(frozen=True)
class Match:
    start: int  # offsets in the normalised text
    end: int
    entry: Entry
    kind: str  # exact | variant | phonetic | fuzzy | near


@dataclass
class Lexicon:
    entries: dict[str, Entry] = field(default_factory=dict)
    allow: list[str] = field(default_factory=list)
    version: str = ""
    normalize: Normalizer = field(default_factory=Normalizer)
    _automaton: ahocorasick.Automaton | None = None
    _phonetic: PhoneticIndex | None = None
    _allow_sound: PhoneticIndex | None = None

    @classmethod
    def load(cls, folder: Path, extra: Iterable[Path] = (), normalizer: Normalizer | None = None) -> Lexicon:
        """Load every ``*.yaml`` in ``folder``, then the user's files in order."""
        lex = cls(normalize=normalizer or Normalizer())
        files = sorted(Path(folder).glob("*.yaml"))
        if not files:
            raise LexiconError(f"{folder}: no lexicon files (*.yaml) found (classifier.lexicon_dir)")
        digest = hashlib.sha1()
        versions = []
        for path, user in [*((f, False) for f in files), *((Path(f), True) for f in extra)]:
            if not path.is_file():
                raise LexiconError(f"{path}: lexicon file not found (classifier.user_lexicons)")
            raw = path.read_bytes()
            digest.update(raw)
            versions.append(lex._add_file(path, raw, user))
        lex.version = (
            f"lexicon-{max(v for v in versions if v) if any(versions) else '0'}+{digest.hexdigest()[:8]}"
        )
        lex._build()
        return lex

    def _add_file(self, path: Path, raw: bytes, user: bool = False) -> str:
        try:
            doc = yaml.safe_load(raw.decode("utf-8")) or {}
        except (yaml.YAMLError, UnicodeDecodeError) as exc:
            raise LexiconError(f"{path}: not valid YAML: {str(exc).splitlines()[0]}") from None
        if not isinstance(doc, dict):
            raise LexiconError(f"{path}: expected a mapping at the top level")
        for item in doc.get("disable") or []:
            self.entries.pop(str(item), None)
        self.allow += [self.normalize(str(p)).text for p in doc.get("allow") or []]
        category = doc.get("category")
        subs = doc.get("subcategories") or {}
        if subs and category not in CATEGORIES:
            raise LexiconError(f"{path}: category: unknown {category!r}; known: {', '.join(CATEGORIES)}")
        for name, spec in subs.items():
            self._add_subcategory(path, category, name, spec or {}, user)
        return str(doc.get("version") or "")

    def _add_subcategory(self, path: Path, category: str, name: str, spec: dict, user: bool = False) -> None:
        where = f"{path}: subcategories.{name}"
        if name not in CATEGORIES[category]:
            raise LexiconError(
                f"{where}: unknown subcategory of {category}; known: {', '.join(CATEGORIES[category])}"
            )
        severity = spec.get("severity")
        if severity not in SEVERITIES:
            raise LexiconError(f"{where}.severity: expected one of {SEVERITIES}, got {severity!r}")
        if not spec.get("basis"):
            raise LexiconError(f"{where}.basis: every subcategory needs a legal or platform basis")
        sub = Subcategory(category, name, severity, str(spec["basis"]), str(spec.get("description", "")))
        for k, item in enumerate(spec.get("entries") or []):
            if not isinstance(item, dict) or not item.get("id") or not item.get("term"):
                raise LexiconError(f"{where}.entries[{k}]: needs at least id and term")
            weight = float(item.get("weight", 1.0))
            if not 0 < weight <= 1:
                raise LexiconError(f"{where}.entries[{k}].weight: must be in (0, 1], got {weight}")
            self.entries[str(item["id"])] = Entry(
                id=str(item["id"]),
                term=str(item["term"]),
                sub=sub,
                variants=tuple(str(v) for v in item.get("variants") or ()),
                exceptions=tuple(self.normalize(str(v)).text for v in item.get("exceptions") or ()),
                requires_any=tuple(self.normalize(str(v)).text for v in item.get("requires_any") or ()),
                max_price_ratio=_ratio(item.get("max_price_ratio"), f"{where}.entries[{k}].max_price_ratio"),
                weight=weight,
                source=path.name,
                user=user,
            )

    def _build(self) -> None:
        auto = ahocorasick.Automaton()
        keyed: dict[str, list[tuple[Entry, str]]] = {}
        for entry in self.entries.values():
            forms = [(entry.term, "exact")] + [(v, "variant") for v in entry.variants]
            for form, kind in forms:
                key = self.normalize(form).text
                items = keyed.setdefault(key, []) if key else []
                if key and all(e.id != entry.id for e, _ in items):  # V信 and vx both become 微信
                    items.append((entry, kind))
        for key, items in keyed.items():
            auto.add_word(key, (len(key), tuple(items)))
        if keyed:
            auto.make_automaton()
        self._automaton = auto if keyed else None
        self._phonetic = PhoneticIndex([(key, entry) for key, items in keyed.items() for entry, _ in items])
        heard = [(a, a) for a in self.allow if len(a) >= ALLOW_BY_SOUND_MIN]
        self._allow_sound = PhoneticIndex(heard, near_min_syllables=None, by_fuzzy=False) if heard else None

    @functools.cached_property
    def subcategories(self) -> dict[str, Subcategory]:
        """Subcategories with at least one entry (computed once: every utterance asks, and a
        lexicon does not change once loaded; an edit loads a new one)."""
        return {e.sub.code: e.sub for e in self.entries.values()}

    def allowed_spans(self, text: str) -> list[tuple[int, int]]:
        """Where the allow-listed phrases occur in normalised ``text``: as spelled, or (four
        characters or more) with every syllable as the phrase's, toneless (not fuzzy, not near)."""
        spans = [span for a in self.allow for span in _spans(text, a)]
        if self._allow_sound is not None:
            hits = self._allow_sound.find(text)
            spans += [(h.start, h.end) for h in hits if (h.start, h.end) not in spans]
        return spans

    def matches(self, text: str, contiguous=lambda start, end: True, allowed=None) -> Iterator[Match]:
        """All matches in normalised ``text``, spelled or by sound, that pass exceptions,
        requirements and allow-lists.  A span matched by spelling is not matched again by sound,
        and a match by sound must be ``contiguous`` in the original (a sound that only appears
        once separators are gone, 州市| 盐 → 走私烟, is a coincidence, not speech)."""
        if self._automaton is None:
            return
        found: list[Match] = []
        for last, (length, items) in self._automaton.iter(text):
            found += [Match(last - length + 1, last + 1, entry, kind) for entry, kind in items]
        spelled = {(m.start, m.end, m.entry.id) for m in found}
        for hit in self._phonetic.find(text):
            if (hit.start, hit.end, hit.payload.id) not in spelled and contiguous(hit.start, hit.end):
                found.append(Match(hit.start, hit.end, hit.payload, hit.kind))
        allowed = self.allowed_spans(text) if allowed is None else allowed  # the caller's, if it has them
        for m in found:
            if any(a <= m.start and m.end <= b for a, b in allowed):
                continue
            if any(a <= m.start and m.end <= b for ex in m.entry.exceptions for a, b in _spans(text, ex)):
                continue
            if m.entry.requires_any and not any(w in text for w in m.entry.requires_any):
                continue
            if m.entry.max_price_ratio is not None:
                ratio = price_ratio(text, m.end)
                if ratio is not None and ratio > m.entry.max_price_ratio:
                    continue  # 原价一百九十九，今天一百二十九: an ordinary discount
            yield m


def _ratio(value, where: str) -> float | None:
    if value is None:
        return None
    try:
        ratio = float(value)
    except (TypeError, ValueError):
        ratio = -1.0
    if not 0 < ratio < 1:
        raise LexiconError(
            f"{where}: must be a number between 0 and 1 (today's price over the reference), got {value!r}"
        )
    return ratio


def _spans(text: str, needle: str) -> list[tuple[int, int]]:
    out, i = [], text.find(needle)
    while needle and i >= 0:
        out.append((i, i + len(needle)))
        i = text.find(needle, i + 1)
    return out
