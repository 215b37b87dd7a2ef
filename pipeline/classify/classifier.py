"""The classifier: normalise → lexicon matches → context rules → scored labels with evidence.

Interface (stable for later models): ``Classifier.classify(text) -> Classification`` whose
``labels`` are :class:`~pipeline.records.Label` objects, one per subcategory, each with its
evidence and legal basis; ``suppressed`` says which matches the context rules cancelled.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from pipeline.classify.lexicon import Lexicon, LexiconError, Match
from pipeline.classify.model import TextModel
from pipeline.classify.normalize import Normalizer, VariantTable
from pipeline.classify.rules import suppressing_rule
from pipeline.config import ClassifierConfig
from pipeline.records import Evidence, Label, Transcript, Violation

log = logging.getLogger(__name__)

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
# a three-syllable term heard with one syllable wrong (将压压 for 降压药) is a label only when the
# model gives that label at least this much; without a model, never (too many coincidences)
SHORT_NEAR_CONFIRM = 0.5
# the model has met a run of seven or more digits (a phone or ID number) in 16 training lines:
# it reads 打我电话13812345678，身份证号110101199003071234发我 as harmless (p 0.004) and the same
# line without the digits as phishing (0.985), so it dismisses nothing in a line that holds one
UNSEEN_BY_MODEL = re.compile(r"\d{7,}")


def weak_sound(m: Match) -> bool:
    """A match by sound that could be a coincidence: fuzzy or one syllable off, or a short term.
    Four or more syllables heard exactly (真孔设象头 for 针孔摄像头) rarely are."""
    return m.kind in ("fuzzy", "near") or (m.kind == "phonetic" and m.end - m.start <= 3)


def short_near(m: Match) -> bool:
    """One wrong syllable in a three-syllable term: a label only with the model's confirmation."""
    return m.kind == "near" and m.end - m.start <= 3


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
    """Lexicon + context rules + trained model, fused; ``setup`` loads everything once."""

    def __init__(self, config: ClassifierConfig) -> None:
        self.config = config
        self.lexicon: Lexicon | None = None
        self.model: TextModel | None = None

    def setup(self) -> None:
        self._load_lexicon()
        if self.config.model_dir is not None:
            self.model = TextModel(self.config.model_dir, self.config.model_threads)
            self.model.setup()

    def _lexicon_files(self) -> list[Path]:
        c = self.config
        files = [*sorted(Path(c.lexicon_dir).glob("*.yaml")), *map(Path, c.user_lexicons)]
        return files + ([Path(c.variant_table)] if c.variant_table else [])

    def _signature(self) -> tuple:
        return tuple(
            (str(p), p.stat().st_mtime_ns, p.stat().st_size) if p.exists() else (str(p),)
            for p in self._lexicon_files()
        )

    def _load_lexicon(self) -> None:
        signature = self._signature()
        self.normalize = Normalizer(VariantTable.load(self.config.variant_table))
        self.lexicon = Lexicon.load(self.config.lexicon_dir, self.config.user_lexicons, self.normalize)
        self._loaded_signature, self._checked_at = signature, time.monotonic()

    def reload_if_changed(self) -> bool:
        """Pick up edited lexicon, user list or variant files without a restart (live workers
        call this through ``classify_many``).  A broken edit keeps the last good lexicon."""
        self._checked_at = time.monotonic()
        if self._signature() == self._loaded_signature:
            return False
        previous = self.lexicon.version
        try:
            self._load_lexicon()
        except (LexiconError, OSError, ValueError) as exc:
            log.error("lexicon change not applied, keeping %s: %s", previous, exc)
            self._loaded_signature = self._signature()
            return False
        log.info("lexicon reloaded: %s → %s", previous, self.lexicon.version)
        return True

    @property
    def version(self) -> str:
        if self.lexicon is None:
            self.setup()
        return self.lexicon.version + (f"+{self.model.version}" if self.model else "")

    def classify(self, text: str, transcript: bool = False) -> Classification:
        return self.classify_many([text], transcript)[0]

    def classify_many(self, texts: list[str], transcript: bool | list[bool] = False) -> list[Classification]:
        """Classify texts together, so the model runs in batches.  ``transcript``: the texts (or
        which of them) are our ASR's output, fused with the settings tuned on transcripts
        (``settings``)."""
        if self.lexicon is None:
            self.setup()
        every = self.config.reload_interval_s
        if every is not None and time.monotonic() - self._checked_at >= every:
            self.reload_if_changed()
        norms = [self.normalize(t) for t in texts]
        if self.model is None:  # the settings are the model's: nothing differs for transcripts
            return [self._fuse(t, n, None) for t, n in zip(texts, norms, strict=True)]
        heard = transcript if isinstance(transcript, list) else [transcript] * len(texts)
        scores = self.scores([n.text for n in norms], heard)
        return [
            self._fuse(t, n, p, a, transcript=h)
            for t, n, (p, a), h in zip(texts, norms, scores, heard, strict=True)
        ]

    def scores(self, normalised: list[str], heard: list[bool]) -> list[tuple[dict, dict]]:
        """The model's (probabilities, agreement) per text, its readers mixed in the shares for
        written text or for our ASR's transcripts (``heard``), read once."""
        each = self.model.read(normalised)
        out: list = [None] * len(normalised)
        for spoken in (False, True):
            rows = [i for i, h in enumerate(heard) if h == spoken]
            if rows:
                for i, pa in zip(rows, self.model.mix(each[:, rows], self.shares(spoken)), strict=True):
                    out[i] = pa
        return out

    def _tuned(self, transcript: bool) -> dict:
        fusion = self.model.fusion if self.model else {}
        return {**fusion, **fusion.get("asr", {})} if transcript and self.config.transcript_fusion else fusion

    def shares(self, transcript: bool = False) -> dict[str, float]:
        """Each of the model's readers' share of its probability, as tuned at training time for
        written text or for our ASR's transcripts (there the n-gram reader, which hears pinyin
        pieces, is far the surest), else as trained."""
        return self._tuned(transcript).get("reader_shares") or self.model.shares

    def settings(self, transcript: bool = False) -> dict[str, float]:
        """The fusion's thresholds: the config's where it sets them, else those tuned at training
        time (``training.json``), for our ASR's transcripts their own where the model has them.
        A transcript's sound-alike match is likelier meant than a typed one (Whisper writes
        包制摆病 for 包治百病, a host does not), so there the model need be less sure of it."""
        c = self.config
        tuned = self._tuned(transcript)
        defaults = {
            "model_veto": 0.05,
            "model_threshold": 0.7,
            "model_agreement": 0.0,
            "model_dismiss": 0.0,
            "model_reject": 0.0,
        }
        return {k: v if (v := getattr(c, k)) is not None else tuned.get(k, d) for k, d in defaults.items()}

    def _lexicon(
        self, text: str, norm, allowed: list[tuple[int, int]]
    ) -> tuple[dict[str, list[tuple[Match, Evidence]]], list, set[str]]:
        """Matches by subcategory code, the ones a context rule cancelled (with the rule), and
        the categories of those."""
        by_code: dict[str, list[tuple[Match, Evidence]]] = {}
        suppressed: list[tuple[Evidence, str]] = []
        context: set[str] = set()
        for m in _longest_first(self.lexicon.matches(norm.text, norm.contiguous, allowed)):
            a, b = norm.original_span(m.start, m.end)
            kind, detail = EVIDENCE_KIND[m.kind]
            if kind == "exact" and text[a:b] != m.entry.term:
                kind = "variant"  # spelled out only after normalisation: 加 V 信, 國家, 加加加
            ev = Evidence(match=text[a:b], span=(a, b), rule=m.entry.id, kind=kind, detail=detail)
            # only a wrong syllable can be an inserted negator; where every syllable is the
            # term's, a 不 is a homophone (外交不指定 is Whisper's 外交部指定)
            term = m.entry.term if m.kind == "near" else None
            rule = suppressing_rule(norm.text, m.start, m.end, self.config.negation_window, term)
            if rule:
                suppressed.append((ev, rule))
                context.add(m.entry.sub.category)
            else:
                by_code.setdefault(m.entry.sub.code, []).append((m, ev))
        return by_code, suppressed, context

    def findings(self, text: str, norm) -> tuple:
        """What the lexicon and the context rules find in an utterance, whatever the fusion's
        thresholds: its allow-listed spans (normalised offsets; the lexicon and the model both
        ask), then ``_lexicon``'s matches by code, suppressions and context categories."""
        allowed_norm = self.lexicon.allowed_spans(norm.text)
        return (allowed_norm, *self._lexicon(text, norm, allowed_norm))

    def _fuse(
        self,
        text: str,
        norm,
        probs: dict[str, float] | None,
        agree: dict[str, float] | None = None,
        found: tuple | None = None,
        transcript: bool = False,
    ) -> Classification:
        """Lexicon scores, raised when the model agrees; sound-alike matches the model finds
        implausible are dropped, and so are matches of entries weighed under 1 that it does not
        believe (``model_dismiss``), and a lone match of any entry where it all but rules the
        violation out (``model_reject``); the model alone flags what it is confident about.  ``found``:
        the utterance's ``findings``, when the caller has them (the fusion tuning tries many
        thresholds on the same utterances); they are not changed.  ``transcript``: the text is our
        ASR's (``settings``)."""
        c = self.config
        s = self.settings(transcript)
        veto, threshold = s["model_veto"], s["model_threshold"]
        agreement, dismiss, reject = s["model_agreement"], s["model_dismiss"], s["model_reject"]
        allowed_norm, by_code, suppressed, context = found or self.findings(text, norm)
        by_code, suppressed = dict(by_code), list(suppressed)  # edited below
        for code in list(by_code):  # short near matches need the model's word (SHORT_NEAR_CONFIRM)
            if probs is None or probs.get(code, 0.0) < SHORT_NEAR_CONFIRM:
                suppressed += [(ev, "unconfirmed_sound") for m, ev in by_code[code] if short_near(m)]
                by_code[code] = [(m, ev) for m, ev in by_code[code] if not short_near(m)]
                if not by_code[code]:
                    del by_code[code]
        subs = self.lexicon.subcategories
        long_digits = UNSEEN_BY_MODEL.search(norm.text) is not None
        labels = []
        for code, items in by_code.items():
            best: dict[str, float] = {}  # one entry counts once, however often it is heard
            for m, _ in items:
                best[m.entry.id] = max(best.get(m.entry.id, 0.0), match_score(m))
            miss = 1.0
            for value in best.values():
                miss *= 1.0 - value
            score = 1.0 - miss
            evidence = tuple(ev for _, ev in items)
            if probs is not None:
                p = probs.get(code, 0.0)
                if all(weak_sound(m) for m, _ in items) and p < veto:
                    suppressed += [(ev, "model_veto") for ev in evidence]
                    continue
                # entries the lexicon itself calls often innocent (weight < 1): the line as a
                # whole does not read as the violation; a weight-1 entry (yours by default) stands
                if p < dismiss and all(m.entry.weight < 1 for m, _ in items) and not long_digits:
                    suppressed += [(ev, "model_dismiss") for ev in evidence]
                    continue
                # nor a lone match where the model is all but sure the line is not this violation;
                # a violation named more than once stands (the seed page's porn spam names three
                # sites, and the model, knowing livestream talk, puts it at 0.001), and so do the
                # user's own entries (a term the model never met would often fall under the line)
                alone = len(items) == 1 and not items[0][0].entry.user
                if p < reject and alone and not long_digits:
                    suppressed += [(ev, "model_reject") for ev in evidence]
                    continue
                score = 1.0 - (1.0 - score) * (1.0 - p)
            if score >= c.min_score:
                sub = items[0][0].entry.sub
                labels.append(Label(sub.category, sub.name, score, sub.severity, sub.basis, evidence))
        # the model alone does not overrule the context rules: in an utterance where a match of a
        # category was negated, reported or warned against, it raises nothing of that category
        # unless it and every reader are sure (model_overrule).  Other categories are the model's
        # to judge: 不用再打胰岛素 negates a sale of insulin, not the efficacy claim around it.
        # Nor does it flag where a phrase of the utterance is declared harmless (an allow-list entry)
        allowed = [norm.original_span(a, b) for a, b in allowed_norm]
        for code, p in (probs or {}).items():
            if code not in by_code and p >= threshold and code in subs:
                if agree is not None and agree.get(code, p) < agreement:
                    continue  # one reader is sure it is harmless: the model alone does not flag it
                sure = c.model_overrule is not None and min(p, (agree or {}).get(code, p)) >= c.model_overrule
                if subs[code].category in context and not sure:
                    continue
                if allowed:
                    a, b = allowed[0]
                    ev = Evidence(match=text[a:b], span=(a, b), rule=self.model.version, kind="model")
                    suppressed.append((ev, "allow_list"))
                    continue
                # on the lexicon's scale, where 0.5 is the line (min_score's default): the model's
                # probability from model_threshold to 1 maps onto 0.5 to 1, so min_score filters
                # model-only flags as it filters the rest; the probability itself is the detail
                score = 0.5 + 0.5 * (p - threshold) / (1.0 - threshold) if threshold < 1 else 1.0
                if score < c.min_score:
                    continue
                sub = subs[code]
                ev = Evidence(
                    match=text,
                    span=(0, len(text)),
                    rule=self.model.version,
                    kind="model",
                    detail=f"p={p:.3f}",
                )
                labels.append(Label(sub.category, sub.name, score, sub.severity, sub.basis, (ev,)))
        labels.sort(key=lambda lab: -lab.score)
        return Classification(text, tuple(labels), tuple(suppressed))

    def process(self, transcripts: list[Transcript], source: str = "") -> list[Violation]:
        """Violations raised on the kept transcripts (the pipeline stage)."""
        kept = [t for t in transcripts if t.kept]
        out = []
        for t, result in zip(kept, self.classify_many([t.text for t in kept], transcript=True), strict=True):
            u = t.utterance
            for label in result.labels:
                evidence = tuple(replace(e, time=t.span_time(e.span)) for e in label.evidence)
                label = replace(label, evidence=evidence)
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
    """Drop matches nested inside a longer match of the same subcategory (最好 inside 全网最好),
    unless the longer one is a short near match, which may yet be dropped for want of the
    model's confirmation."""
    ms = sorted(matches, key=lambda m: (m.start, -(m.end - m.start)))
    kept: list[Match] = []
    for m in ms:
        if any(
            k.start <= m.start and m.end <= k.end and k.entry.sub == m.entry.sub and not short_near(k)
            for k in kept
        ):
            continue
        kept.append(m)
    return kept
