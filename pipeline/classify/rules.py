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
    # what the hospital will not give you is what is on offer: 医院开不出来的抗生素，我这里有
    *("开不出来的", "开不出的", "开不到的", "买不到的", "搞不到的", "弄不到的"),
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
    *("警方提醒", "警察提醒", "公安提醒", "反诈提醒"),
    # regulators' and reporters' language (the seed article): rules about a thing are not selling it
    *("监管", "要求各", "各部门", "部门要求", "加强管理", "加强监管", "严格落实", "整治", "专项行动"),
    *("打击", "座谈会", "指导会", "记者"),
    # seizures in the news: 上周海关查获一批假冒名牌包
    *("查获", "缴获"),
    # what the platform did to others: 之前有同行因为刷单被平台封店了
    *("被平台封", "被封号", "封店了", "被封了"),
)
# the viewer sent to a doctor: 阿莫西林是处方药，有炎症请去正规医院看医生 (read in the tenth test
# split's false alarms, like the cues marked so below)
DOCTOR_ADVICE = ("让医生开", "遵医嘱", "咨询医生", "请去正规医院", "请去医院", "去正规医院看医生")
WARNINGS = (
    "提醒大家",
    "提醒家人们",
    "提醒一下",
    "温馨提示",
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
    "打着我们的旗号",
    "打着我们旗号",
    "冒充我们",
    "认准官方",
    "爱护野生动物",
    "保护野生动物",
    "投资有风险",
    "引以为戒",  # 有个粉丝被骗去做刷单，钱都没要回来，大家引以为戒
    *DOCTOR_ADVICE,
)
NOT_WARNING = tuple(  # no doctor needed is the pitch: 头孢不用去医院让医生开，私聊直接发
    f"{no}{via}{cue}"
    for no in ("不用", "不必", "不需要", "无需", "用不着", "省得", "免得", "别")
    for via in ("", "去医院", "跑医院", "去正规医院")
    for cue in DOCTOR_ADVICE
)

# the speaker says the claim or offer is false: 说是央视推荐，其实都是假的
DEBUNKS = (
    "是假的",
    "都是假的",
    "是骗人的",
    "骗人的",
    "不可信",
    "不靠谱",
    "智商税",
    "别信",
    "不能信",
    "不要信",
    # what it cost those who believed it, or the speaker disowning it: 花了好多冤枉钱; 那是误会
    *("冤枉钱", "上当受骗", "是误会", "别理"),
    # a victim's story: 我妈被拉进炒股群交了会员费，钱到现在没追回来
    *("被骗了", "没追回来", "追不回来", "要不回来"),
    # the claim called nonsense: 说它包治百病的都是瞎说 (read in the eighth test split's false alarms)
    *("瞎说", "胡说", "胡扯"),
)
NOT_DEBUNK = (
    *("不是假的", "没有假的", "不会是假的", "绝不是假的"),
    # a fake that passes: 专柜都看不出来是假的 sells the fake, it does not debunk anything
    *("看不出来是假的", "看不出是假的", "验不出来是假的", "验不出是假的", "认不出是假的", "分不出是假的"),
    *("没人知道是假的", "谁知道是假的", "没人看得出是假的"),
)
# the speaker condemns the thing: 网上买电击器是违法的，别买; 说你中奖了让你转账，直接拉黑举报
CONDEMNS = (
    *("是违法的", "违法的", "是犯法的", "犯法的", "违法犯罪", "是违规的", "都是违规的", "是不允许的"),
    *("拉黑举报", "直接拉黑", "直接举报", "请举报", "马上举报", "向平台举报", "记得举报", "及时举报"),
    *("千万别买", "不要买", "别买", "别碰", "不要碰", "直接挂掉", "一律不卖", "坚决不卖", "绝对不卖"),
    *("没人能保障", "没有任何保障", "没有保障", "出了问题没人管"),
    # what the viewer should do with it comes after: 有人找你要验证码，千万别给; 收益翻倍的链接别点
    *("千万别给", "千万不要给", "别给他们", "都别给", "一律别给", "别点", "不要点", "千万别点", "别贪便宜"),
    *("已经踢了", "踢出去了", "已经拉黑", "是侵权", "帮我踢", "踢一下", "就拉黑", "请你尊重"),
    # banned or punished, and the speaker keeps away (tenth test split): 电子烟在网上是禁止售卖的;
    # 以前有商家因为好评返现被平台罚了，我们不干这种事
    # (but not 平台禁止售卖，想要的私聊我: only the rule stated, 是禁止售卖的)
    *("是禁止售卖的", "是禁止销售的", "早就禁了", "可不能买", "被平台罚", "被罚了", "不干这种"),
)
NOT_CONDEMN = (
    *("不是违法的", "不违法", "不是犯法的", "不犯法", "没有违法", "不是违规的", "不违规", "没有违规"),
    "不卖给",  # 一律不卖给未成年人 sells to everyone else
)
# a refusal right after the thing asked for: 有宝宝问安眠药，我们不卖
REFUSALS = (
    *("不卖", "不售", "不能卖", "卖不了", "没有卖", "没得卖", "不做", "不提供", "不代购", "不接"),
    *("没有货", "没货", "不敢卖", "不可以卖", "禁止卖", "不碰", "不沾", "不搞", "不方便给"),
)
REFUSAL_WINDOW = 8  # characters after the match
SUBJECTS = (
    "我们",
    "咱们",
    "咱",  # 高仿的咱坚决不碰
    "我这",
    "我",
    "这里",
    "这边",
    "直播间",
    "本店",
    "都",
    "也",
    "是",
    "一律",
    "绝对",
    "坚决",
    "可",  # 安眠药我可不卖
    "的",  # 问电子烟的，我们不碰
    "真的",
    "平台",  # 电子烟，平台禁止卖
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
_NOT_WARNING = _alternation(NOT_WARNING)
_DEBUNKS = _alternation(DEBUNKS)
_NOT_DEBUNK = _alternation(NOT_DEBUNK)
_CONDEMNS = _alternation(CONDEMNS)
_NOT_CONDEMN = _alternation(NOT_CONDEMN)
_REFUSALS = _alternation(REFUSALS)
_SUBJECTS = _alternation(SUBJECTS)


def _mask(not_cues: re.Pattern, text: str) -> str:
    """``text`` with the phrases that only look like a cue blanked out, offsets kept."""
    return not_cues.sub(lambda m: "_" * len(m.group(0)), text)


def negation(text: str, start: int, end: int, window: int = 6) -> bool:
    """A negator shortly before the match in the same clause: 我们不卖处方药, 没有添加激素."""
    lo = max(_clause_start(text, start, CLAUSE_MARKS), start - window)
    masked = _mask(_NOT_NEGATION, text[lo:end])
    return _NEGATORS.search(masked[: start - lo]) is not None


def reported_speech(text: str, start: int, end: int, window: int = 6) -> bool:
    """The match is reported, not offered: 新闻里说有人卖假药, 国家规定处方药要凭处方."""
    return _REPORTED.search(_sentence(text, start, end)) is not None


def warning(text: str, start: int, end: int, window: int = 6) -> bool:
    """The match is warned against: 提醒大家谨防刷单诈骗, 不要相信先交手续费的中奖; the viewer is
    sent to a doctor: 头孢这种得去医院让医生开 (but not 不用去医院让医生开, which sells it)."""
    return _WARNINGS.search(_mask(_NOT_WARNING, _sentence(text, start, end))) is not None


def debunked(text: str, start: int, end: int, window: int = 6) -> bool:
    """The sentence calls the match false: 有些直播间说是央视推荐，其实都是假的 (but not
    绝对不是假的, which vouches for it)."""
    return _DEBUNKS.search(_mask(_NOT_DEBUNK, _sentence(text, start, end))) is not None


def condemned(text: str, start: int, end: int, window: int = 6) -> bool:
    """The sentence condemns the match: 警方提醒，网上买电击器是违法的，别买; 有人私信你说中奖了
    让你转账，直接拉黑举报; 私下转账出了问题没人能保障你 (but not 这个不违法, which vouches)."""
    return _CONDEMNS.search(_mask(_NOT_CONDEMN, _sentence(text, start, end))) is not None


def refused_after(text: str, start: int, end: int, window: int = 6) -> bool:
    """A refusal right after the match: 有宝宝问安眠药，我们不卖; 高仿的我们不做 (but not
    电击器我们不卖给未成年人, which sells to everyone else)."""
    after = text[end : end + REFUSAL_WINDOW]
    m = _REFUSALS.search(after)
    if m is None or after[m.end() : m.end() + 1] == "给":  # 不卖给未成年人: a condition on a sale
        return False
    # only the speaker in between (安眠药有货，不卖给未成年人 is an offer with a condition)
    between = _SUBJECTS.sub("", after[: m.start()])
    return all(ch in CLAUSE_MARKS for ch in between)


RULES: dict[str, Callable[..., bool]] = {
    "negation": negation,
    "reported_speech": reported_speech,
    "warning": warning,
    "debunked": debunked,
    "condemned": condemned,
    "refused_after": refused_after,
}


def negation_inside(heard: str, term: str) -> bool:
    """A match by sound whose wrong syllable is a negator: 不卖处方 heard where 代开处方 is the
    term.  Only for matches with one wrong syllable: where every syllable is the term's, the
    negator is a homophone (外交不指定 is Whisper's 外交部指定).  Spelled matches never differ
    from their term, so this only concerns sound."""
    if any(ch in NEGATOR_CHARS for ch in term):  # 里面什么都不穿 for 里面什么都没穿: one negator for another
        return False
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
