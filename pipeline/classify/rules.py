"""Context rules: a lexicon match is not a violation when the context says otherwise.

Each rule is a named function ``(text, start, end) -> bool`` over normalised text, true when
the match at ``[start, end)`` should be suppressed.  The classifier records which rule
suppressed a match, so a moderator can see why something was *not* flagged.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from pipeline.classify.normalize import CLAUSE_MARKS, SENTENCE_MARKS

NEGATORS = (
    "千万不要",
    "千万别",
    "绝对不",
    "从来不",
    "从不",
    "不要",
    "不会",
    "不能",
    "不是",
    "不卖",
    "不做",
    "不支持",
    "不允许",
    "没有",
    "没",
    "别",
    "禁止",
    "严禁",
    "拒绝",
    "杜绝",
    "不",
)
# words that start with a negator character but do not negate what follows
NOT_NEGATION = (
    "不错",
    "不少",
    "不仅",
    "不但",
    "不断",
    "不同",
    "不过",
    "不管",
    "不如",
    "不得了",
    "不一样",
    "没错",
    "无论",
    "别人",
    "别的",
    "特别",
    "区别",
    "不用处方",
    "无需处方",
    "不走平台",
    "不用排队",
    "不要钱",
    "没有风险",
    "无风险",
)
REPORTED = (
    "新闻里说",
    "新闻说",
    "新闻报道",
    "据报道",
    "报道说",
    "听说",
    "有人说",
    "网上说",
    "国家规定",
    "法律规定",
    "平台规定",
    "按照规定",
    "依法",
    "被抓",
    "被查",
    "被处罚",
    "被罚",
    "曝光",
    # regulators' and reporters' language (the seed article): rules about a thing are not selling it
    *("监管", "要求各", "各部门", "部门要求", "加强管理", "加强监管", "严格落实", "整治", "专项行动"),
    *("打击", "座谈会", "指导会", "记者"),
)
WARNINGS = (
    "提醒大家",
    "提醒家人们",
    "大家注意",
    "请注意",
    "谨防",
    "警惕",
    "当心",
    "小心",
    "防止",
    "避免",
    "不要相信",
    "别相信",
    "不要轻信",
    "别上当",
    "是骗局",
    "是诈骗",
    "是骗子",
)


def _clause_start(text: str, pos: int, marks: set[str]) -> int:
    i = pos
    while i > 0 and text[i - 1] not in marks:
        i -= 1
    return i


def _sentence(text: str, start: int, end: int) -> str:
    """The sentence around [start, end): from the previous to the next sentence mark."""
    a = _clause_start(text, start, SENTENCE_MARKS)
    b = end
    while b < len(text) and text[b] not in SENTENCE_MARKS:
        b += 1
    return text[a:b]


def _alternation(words) -> re.Pattern:
    return re.compile("|".join(map(re.escape, sorted(words, key=len, reverse=True))))


_NOT_NEGATION = _alternation(NOT_NEGATION)
_NEGATORS = _alternation(NEGATORS)
_REPORTED = _alternation(REPORTED)
_WARNINGS = _alternation(WARNINGS)


def negation(text: str, start: int, end: int, window: int = 6) -> bool:
    """A negator shortly before the match in the same clause: 我们不卖处方药, 没有添加激素."""
    lo = max(_clause_start(text, start, CLAUSE_MARKS), start - window)
    masked = _NOT_NEGATION.sub(lambda m: "_" * len(m.group(0)), text[lo:end])
    return _NEGATORS.search(masked[: start - lo]) is not None


def reported_speech(text: str, start: int, end: int, window: int = 6) -> bool:
    """The match is reported, not offered: 新闻里说有人卖假药, 国家规定处方药要凭处方."""
    return _REPORTED.search(_sentence(text, start, end)) is not None


def warning(text: str, start: int, end: int, window: int = 6) -> bool:
    """The match is warned against: 提醒大家谨防刷单诈骗, 不要相信先交手续费的中奖."""
    return _WARNINGS.search(_sentence(text, start, end)) is not None


RULES: dict[str, Callable[..., bool]] = {
    "negation": negation,
    "reported_speech": reported_speech,
    "warning": warning,
}


def negation_inside(heard: str, term: str) -> bool:
    """A match by sound whose extra syllable is a negator: 不卖处方 heard where 代开处方 is
    the term.  Spelled matches never differ from their term, so this only concerns sound."""
    return any(ch in NEGATOR_CHARS and ch not in term for ch in heard)


NEGATOR_CHARS = "不没别勿未莫"


def suppressing_rule(text: str, start: int, end: int, window: int = 6, term: str | None = None) -> str:
    """Name of the first rule that suppresses the match, or "".  ``term`` is given for matches
    by sound, whose text may differ from the term."""
    if term is not None and negation_inside(text[start:end], term):
        return "negation_inside"
    for name, rule in RULES.items():
        if rule(text, start, end, window):
            return name
    return ""
