"""The violation taxonomy.  Codes are a contract: users, databases and later models rely on them."""

from __future__ import annotations

CATEGORIES: dict[str, tuple[str, ...]] = {
    "false_claim": ("absolute_term", "efficacy_claim", "fake_authority", "price_fraud"),
    "banned_product": (
        "prescription_drug",
        "tobacco",
        "wildlife",
        "weapon",
        "counterfeit",
        "other",
    ),
    "fraud": ("off_platform", "investment_scam", "fake_order", "prize_scam", "info_phishing"),
    "vulgar": ("sexual",),
}

CODES: tuple[str, ...] = tuple(f"{c}.{s}" for c, subs in CATEGORIES.items() for s in subs)
SEVERITIES = ("high", "medium", "low")


def split_code(code: str) -> tuple[str, str]:
    """``"fraud.off_platform"`` → ``("fraud", "off_platform")``; raises ValueError if unknown."""
    if code not in CODES:
        raise ValueError(f"unknown violation code {code!r}; known: {', '.join(CODES)}")
    category, sub = code.split(".", 1)
    return category, sub
