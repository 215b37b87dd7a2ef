"""Personal data spoken in a stream: phone, ID-card and bank-card numbers.

They are evidence (a streamer reading out a phone number is a fraud pitch), so they stay in the
database; what a reader sees depends on the role.  Masks keep the length of the number, so
evidence spans (character offsets) still point at the right words.
"""

from __future__ import annotations

import re
from typing import Any

_SEP = r"[ \-]?"
# Order matters: an ID card (18) contains what would look like a phone number.
_PATTERNS = (
    ("id_card", re.compile(r"(?<!\d)[1-9]\d{5}(?:19|20)\d{2}(?:0[1-9]|1[0-2])\d{2}\d{3}[\dXx](?![\dXx])")),
    ("bank_card", re.compile(r"(?<!\d)[3-6]\d{3}(?:" + _SEP + r"\d{4}){2,3}(?:" + _SEP + r"\d{1,3})?(?!\d)")),
    ("phone", re.compile(r"(?<!\d)(?:\+?86" + _SEP + r")?1[3-9]\d(?:" + _SEP + r"\d{4}){2}(?!\d)")),
)


def _mask(kind: str, s: str) -> str:
    digits = [i for i, ch in enumerate(s) if ch.isdigit() or ch in "Xx"]
    if kind == "phone":
        keep = set(digits[:3] + digits[-4:]) if len(digits) <= 11 else set(digits[:5] + digits[-4:])
    elif kind == "id_card":
        keep = set(digits[:3] + digits[-4:])
    else:
        keep = set(digits[:4] + digits[-4:])
    return "".join(ch if (i in keep or i not in digits) else "*" for i, ch in enumerate(s))


def mask_text(text: str | None) -> str | None:
    """``请打13812345678`` → ``请打138****5678``; ID and bank cards keep only their ends."""
    if not text:
        return text
    out = text
    for kind, pattern in _PATTERNS:
        out = pattern.sub(lambda m, k=kind: _mask(k, m.group(0)), out)
    return out


def find_pii(text: str) -> list[tuple[str, str]]:
    return [(kind, m.group(0)) for kind, p in _PATTERNS for m in p.finditer(text or "")]


TEXT_FIELDS = ("text", "utterance_text", "match")


def mask_record(obj: Any) -> Any:
    """Mask every text field of a (nested) record: items, evidence, context utterances."""
    if isinstance(obj, dict):
        return {
            k: (mask_text(v) if k in TEXT_FIELDS and isinstance(v, str) else mask_record(v))
            for k, v in obj.items()
        }
    if isinstance(obj, list):
        return [mask_record(x) for x in obj]
    return obj
