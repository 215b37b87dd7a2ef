"""The classifier: normalise → lexicon matches → context rules → scored labels with evidence.

Interface (stable for later models): ``Classifier.classify(text) -> Classification`` whose
``labels`` are :class:`~pipeline.records.Label` objects, one per subcategory, each with its
evidence and legal basis; ``suppressed`` says which matches the context rules cancelled.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from pipeline.classify.lexicon import Lexicon, Match
from pipeline.classify.normalize import normalize
from pipeline.classify.rules import suppressing_rule
from pipeline.config import ClassifierConfig
from pipeline.records import Evidence, Label, Transcript, Violation

# how far a match is from the spelling decides how much it counts
KIND_SCORE = {"exact": 0.9, "variant": 0.85, "phonetic": 0.75, "fuzzy": 0.65, "near": 0.6}
SOUND_KINDS = ("phonetic", "fuzzy", "near")
# match kind → evidence (kind, detail); the evidence kinds are a contract: exact|variant|phonetic|model
EVIDENCE_KIND = {
    "exact": ("exact", ""),
    "variant": ("variant", ""),
    "phonetic": ("phonetic", "pinyin"),
    "fuzzy": ("phonetic", "fuzzy-pinyin"),
    "near": ("phonetic", "near-pinyin"),
}
SHORT_SOUND_FACTOR = 0.75  # a two-character term matched by sound alone is weak evidence (高防 ≠ 高仿)


def match_score(m: Match) -> float:
    score = KIND_SCORE[m.kind] * m.entry.weight
    if m.kind in SOUND_KINDS and m.end - m.start <= 2:
        score *= SHORT_SOUND_FACTOR
    return score


@dataclass(frozen=True)
class Classification:
    text: str
    labels: tuple[Label, ...]
    suppressed: tuple[tuple[Evidence, str], ...] = field(default=())  # (evidence, rule name)

    def to_dict(self) -> dict:
        return {
            "labels": [lab.to_dict() for lab in self.labels],
            "suppressed": [{**ev.to_dict(), "by": rule} for ev, rule in self.suppressed],
        }


class Classifier:
    """Lexicon + context rules; ``setup`` loads the lexicon once per worker."""

    def __init__(self, config: ClassifierConfig) -> None:
        self.config = config
        self.lexicon: Lexicon | None = None

    def setup(self) -> None:
        self.lexicon = Lexicon.load(self.config.lexicon_dir, self.config.user_lexicons)

    @property
    def version(self) -> str:
        if self.lexicon is None:
            self.setup()
        return self.lexicon.version

    def classify(self, text: str) -> Classification:
        if self.lexicon is None:
            self.setup()
        norm = normalize(text)
        by_code: dict[str, list[tuple[Match, Evidence]]] = {}
        suppressed: list[tuple[Evidence, str]] = []
        for m in _longest_first(self.lexicon.matches(norm.text)):
            a, b = norm.original_span(m.start, m.end)
            kind, detail = EVIDENCE_KIND[m.kind]
            ev = Evidence(match=text[a:b], span=(a, b), rule=m.entry.id, kind=kind, detail=detail)
            term = m.entry.term if m.kind in SOUND_KINDS else None
            rule = suppressing_rule(norm.text, m.start, m.end, self.config.negation_window, term)
            if rule:
                suppressed.append((ev, rule))
                continue
            by_code.setdefault(m.entry.sub.code, []).append((m, ev))
        labels = []
        for items in by_code.values():
            sub = items[0][0].entry.sub
            miss = 1.0
            for m, _ in items:
                miss *= 1.0 - match_score(m)
            score = 1.0 - miss
            if score >= self.config.min_score:
                labels.append(
                    Label(
                        sub.category, sub.name, score, sub.severity, sub.basis, tuple(ev for _, ev in items)
                    )
                )
        labels.sort(key=lambda lab: -lab.score)
        return Classification(text, tuple(labels), tuple(suppressed))

    def process(self, transcripts: list[Transcript], source: str = "") -> list[Violation]:
        """Violations raised on the kept transcripts (the pipeline stage)."""
        out = []
        for t in transcripts:
            if not t.kept:
                continue
            for label in self.classify(t.text).labels:
                evidence = tuple(replace(e, time=t.span_time(e.span)) for e in label.evidence)
                label = Label(
                    label.category, label.subcategory, label.score, label.severity, label.basis, evidence
                )
                u = t.utterance
                out.append(
                    Violation(
                        u.stream_id,
                        source,
                        u.utterance_id,
                        u.start,
                        u.end,
                        t.text,
                        label,
                        t.asr_model,
                        self.version,
                    )
                )
        return out


def _longest_first(matches) -> list[Match]:
    """Drop matches nested inside a longer match of the same subcategory (最好 inside 全网最好)."""
    ms = sorted(matches, key=lambda m: (m.start, -(m.end - m.start)))
    kept: list[Match] = []
    for m in ms:
        if any(k.start <= m.start and m.end <= k.end and k.entry.sub == m.entry.sub for k in kept):
            continue
        kept.append(m)
    return kept
