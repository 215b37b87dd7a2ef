"""Scoring: text-level precision/recall per (sub)category, and stream-level matching of
violations against a truth file (right category, start within a tolerance)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from pipeline.classify.taxonomy import CATEGORIES, CODES


def read_jsonl(path: str | Path) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


@dataclass
class Counts:
    tp: int = 0
    fp: int = 0
    fn: int = 0

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 1.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 1.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0


def score_labels(gold: Iterable[set[str]], pred: Iterable[set[str]]) -> dict:
    """Per-code and per-category counts, plus the false-positive rate on benign items."""
    per: dict[str, Counts] = {c: Counts() for c in [*CATEGORIES, *CODES]}
    benign = benign_flagged = 0
    for g, p in zip(gold, pred, strict=True):
        if not g:
            benign += 1
            benign_flagged += bool(p)
        for level in (lambda c: c, lambda c: c.split(".")[0]):
            gl, pl = {level(c) for c in g}, {level(c) for c in p}
            for c in gl & pl:
                per[c].tp += 1
            for c in pl - gl:
                per[c].fp += 1
            for c in gl - pl:
                per[c].fn += 1
    macro = sum(per[c].f1 for c in CATEGORIES) / len(CATEGORIES)
    return {
        "per": per,
        "macro_f1": macro,
        "benign": benign,
        "fpr": benign_flagged / benign if benign else 0.0,
    }


def format_scores(scores: dict) -> str:
    lines = [f"{'code':34s} {'P':>6s} {'R':>6s} {'F1':>6s} {'tp':>4s} {'fp':>4s} {'fn':>4s}"]
    for code, c in scores["per"].items():
        if c.tp + c.fp + c.fn == 0:
            continue
        indent = "  " if "." in code else ""
        lines.append(
            f"{indent + code:34s} {c.precision:6.3f} {c.recall:6.3f} {c.f1:6.3f} "
            f"{c.tp:4d} {c.fp:4d} {c.fn:4d}"
        )
    lines.append(f"macro-F1 over categories: {scores['macro_f1']:.3f}")
    lines.append(f"false-positive rate on benign: {scores['fpr']:.3f} ({scores['benign']} benign items)")
    return "\n".join(lines)


def _aug_keys(row: dict) -> set[str]:
    """How an item was written (its ``aug``), and the group that kind belongs to."""
    kind = row.get("aug", "none")
    return {kind, "original" if kind == "none" else ("asr" if kind == "asr" else "variant")}


def recall_by_aug(rows: list[dict], pred: list[set[str]]) -> dict[str, float]:
    """Category-level recall on violating items by how they were written (the ``aug`` field:
    none, traditional, separator, pinyin, homophone, …, asr), plus the groups ``original``,
    ``variant`` (every rewritten kind) and ``asr``."""
    hits: dict[str, list[int]] = {}
    for r, p in zip(rows, pred, strict=True):
        if not r.get("labels"):
            continue
        gold = {c.split(".")[0] for c in r["labels"]}
        got = {c.split(".")[0] for c in p}
        for key in _aug_keys(r):
            hits.setdefault(key, []).append(int(bool(gold & got)))
    return {k: round(sum(v) / len(v), 3) for k, v in sorted(hits.items())}


def format_recall_by_aug(recall: dict[str, float], rows: list[dict]) -> str:
    counts: dict[str, int] = {}
    for r in rows:
        if r.get("labels"):
            for key in _aug_keys(r):
                counts[key] = counts.get(key, 0) + 1
    return "recall on violating items by how they were written:\n" + "\n".join(
        f"  {k:12s} {v:6.3f}  ({counts.get(k, 0)} items)" for k, v in recall.items()
    )


@dataclass
class StreamMatch:
    found: list[tuple[dict, dict]]  # (truth utterance, violation)
    missed: list[dict]  # violating truth utterances with no matching violation
    false_alarms: list[dict]  # violations matching no violating truth utterance of that category

    @property
    def recall(self) -> float:
        total = len(self.found) + len(self.missed)
        return len(self.found) / total if total else 1.0


def match_stream(truth: list[dict], violations: list[dict], tolerance: float = 2.0) -> StreamMatch:
    """A violating truth utterance is found when a violation of one of its categories starts
    within ``tolerance`` seconds of it; a violation is a false alarm when it matches no truth
    utterance labelled with its category."""

    def fits(u: dict, v: dict) -> bool:
        cats = {c.split(".")[0] for c in u.get("labels", [])}
        return v["category"] in cats and abs(v["start"] - u["start"]) <= tolerance

    violating = [u for u in truth if u.get("labels")]
    found, missed = [], []
    for u in violating:
        hit = next((v for v in violations if fits(u, v)), None)
        if hit:
            found.append((u, hit))
        else:
            missed.append(u)
    false_alarms = [v for v in violations if not any(fits(u, v) for u in violating)]
    return StreamMatch(found, missed, false_alarms)
