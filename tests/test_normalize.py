"""Normalisation: every evasion kind, and offsets that lead back to what was said."""

import pytest

from pipeline.classify.classifier import Classifier
from pipeline.classify.normalize import Normalizer, VariantTable
from pipeline.classify.phonetic import PhoneticIndex, sounds, syllables
from pipeline.config import ClassifierConfig, load_config


@pytest.fixture(scope="module")
def norm():
    return Normalizer(VariantTable.load(load_config().classifier.variant_table))


@pytest.mark.parametrize(
    "kind, said, normalised",
    [
        ("traditional", "這個茶包治百病", "这个茶包治百病"),
        ("full width", "加ＶＸ", "加微信"),
        ("spaces", "加 微 信", "加微信"),
        ("separators", "加.微-信_私*聊", "加微信私聊"),
        ("emoji", "加🌹微🌹信❤️", "加微信"),
        ("letters", "加V信", "加微信"),
        ("pinyin letters", "加weixin", "加微信"),
        ("homophone table", "加薇信", "加微信"),
        ("numerals", "电话幺三八一二三四五六七八", "电话13812345678"),
        ("repeats", "加加加微信", "加微信"),
        ("pinyin gloss", "監(jiān)督管理", "监督管理"),
    ],
)
def test_variant_kinds(norm, kind, said, normalised):
    assert norm(said).text == normalised


@pytest.mark.parametrize("text", ["宝宝一下单就发货", "价格9.9元", "看看看", "8888元", "第一次，谢谢"])
def test_ordinary_text_keeps_its_meaning(norm, text):
    out = norm(text).text
    assert out in (text, "看") or out == text.replace("，", ",")


def test_offsets_lead_back_to_the_original(norm):
    said = "想要的 加 Ｖ 信 私聊"
    n = norm(said)
    i = n.text.index("微信")
    a, b = n.original_span(i, i + 2)
    assert said[a:b] == "Ｖ 信"
    a, b = n.original_span(n.text.index("加"), n.text.index("加") + 4)
    assert said[a:b] == "加 Ｖ 信 私"


def test_pinyin_runs_are_heard_as_syllables():
    assert [s for s, _, _ in sounds("加weixin")] == ["jia", "wei", "xin"]
    assert [(a, b) for _, a, b in sounds("加weixin")] == [(0, 1), (1, 4), (4, 7)]
    assert [s for s, _, _ in sounds("ok吗")] == ["o", "k", "ma"]


def test_syllables_read_each_word_as_pypinyin_reads_the_whole_text():
    from pypinyin import lazy_pinyin

    # 银行 hang, 行走 xing, 长大 zhang, 长城 chang: a word's reading is the word's own
    for text in ["我在银行工作", "他行走在路上", "长大了去长城", "加weixin号", "ok吗", "1号2号"]:
        assert syllables(text) == lazy_pinyin(text, errors=lambda chunk: list(chunk)), text


def test_one_wrong_syllable_is_heard_anywhere_in_a_term():
    index = PhoneticIndex([("降压药", "drug"), ("包治百病", "claim")])
    for said, term in [
        ("家压药", "drug"),
        ("降以药", "drug"),
        ("降压有", "drug"),
        ("猫治百病", "claim"),
        ("包吃百病", "claim"),
        ("包治百灵", "claim"),
    ]:
        hits = [(h.start, h.end, h.payload, h.kind) for h in index.find("说" + said + "了")]
        assert hits == [(1, 1 + len(said), term, "near")], said
    hits = index.find("家压药和包吃百病")  # in the order they are heard
    assert [(h.start, h.payload) for h in hits] == [(0, "drug"), (4, "claim")]


@pytest.mark.parametrize(
    "said",
    [
        "加 微 信私聊",
        "加.微.信，私聊",
        "加🌹薇🌹信私聊",
        "加Ｖ信私聊",
        "加wei xin私聊",
        "加加加微信私聊",
        "加威信私聊",
    ],
)
def test_evasions_are_flagged_with_evidence_on_the_original(said):
    clf = Classifier(ClassifierConfig(model_dir=None))
    label = next(lab for lab in clf.classify(said).labels if lab.code == "fraud.off_platform")
    for ev in label.evidence:
        assert said[ev.span[0] : ev.span[1]] == ev.match
    assert any(ev.kind in ("variant", "phonetic") for ev in label.evidence)
