"""Amounts of money as said in a stream: 一百九十九, 一千二, 两百, 三千六, 199, 2.5万.

Used by lexicon entries with ``max_price_ratio``: a reference price (原价, 吊牌价) compared
with today's price is a sign of a made-up reference only when the cut is implausible
(原价一千二，今天一百二), not for an ordinary discount (原价一百九十九，今天一百二十九).
"""

from __future__ import annotations

import re

DIGITS = {
    "零": 0,
    "〇": 0,
    "一": 1,
    "幺": 1,
    "二": 2,
    "两": 2,
    "三": 3,
    "四": 4,
    "五": 5,
    "六": 6,
    "七": 7,
    "八": 8,
    "九": 9,
}
UNITS = {"十": 10, "百": 100, "千": 1000, "万": 10000}
_NUMBER = re.compile(r"\d+(?:\.\d+)?万?|[零〇一幺二两三四五六七八九十百千万]+")


def spoken_number(word: str) -> float | None:
    """The value of one number word: 一百九十九 → 199, 一千二 → 1200 (the unit below is
    implied), 三千零五 → 3005, 十五 → 15, 一九九 → 199 (digit by digit), 2.5万 → 25000."""
    if word[0].isdigit():
        value = float(word.rstrip("万"))
        return value * 10000 if word.endswith("万") else value
    if not any(c in UNITS for c in word):  # digit by digit: 一九九
        return float("".join(str(DIGITS[c]) for c in word)) if len(word) > 1 else float(DIGITS[word])
    total = section = 0
    digit: int | None = None
    last_unit = 10
    for c in word:
        if c in DIGITS:
            digit = DIGITS[c]
        elif c == "万":
            section = (section + (digit or 0)) or 1
            total += section * 10000
            section, digit, last_unit = 0, None, 10000
        else:
            section += (1 if digit is None else digit) * UNITS[c]
            digit, last_unit = None, UNITS[c]
    if digit is not None:  # a trailing digit: 一千二 is 1200, 一百零二 is 102
        zero_before = word[-2] in "零〇" if len(word) > 1 else True
        section += digit if zero_before else digit * last_unit // 10
    return float(total + section) if total + section else None


def amounts(text: str) -> list[tuple[int, int, float]]:
    """Every number in ``text`` with its span, in order (一 alone, as in 一件, is skipped)."""
    out = []
    for m in _NUMBER.finditer(text):
        word = m.group(0)
        if len(word) == 1 and not word.isdigit():
            continue  # 一件, 两包: counts, not prices
        value = spoken_number(word)
        if value:
            out.append((m.start(), m.end(), value))
    return out


def price_ratio(text: str, after: int) -> float | None:
    """Today's price over the reference price: the first amount after ``after`` (the reference
    term's end) is the reference, the next amount the price asked.  None when the sentence does
    not give both, e.g. 原价虚标."""
    found = [(a, v) for a, _, v in amounts(text) if a >= after]
    if len(found) < 2:
        return None
    reference, asked = found[0][1], found[1][1]
    return asked / reference if reference else None
