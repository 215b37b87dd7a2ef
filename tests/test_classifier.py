"""The lexicon classifier: taxonomy, evidence, sound-alike matches, context rules, user lexicons."""

import pytest
from conftest import DEMO, read_jsonl

from pipeline.classify.classifier import Classifier
from pipeline.classify.lexicon import Lexicon, LexiconError
from pipeline.classify.taxonomy import CODES
from pipeline.config import ClassifierConfig


@pytest.fixture(scope="module")
def clf():
    c = Classifier(ClassifierConfig())
    c.setup()
    return c


def codes(clf, text):
    return {lab.code for lab in clf.classify(text).labels}


def test_lexicon_covers_the_whole_taxonomy(clf):
    assert set(clf.lexicon.subcategories) == set(CODES)
    for sub in clf.lexicon.subcategories.values():
        assert sub.basis and sub.severity in ("high", "medium", "low")
    assert clf.version.startswith("lexicon-")


@pytest.mark.parametrize("row", read_jsonl(DEMO / "truth.jsonl"), ids=lambda r: r["id"])
def test_demo_script_lines(clf, row):
    """Every line of the demo script gets exactly its labels (benign lines none)."""
    assert codes(clf, row["text"]) == set(row["labels"])


@pytest.mark.parametrize(
    "heard, code",
    [
        ("这个养生茶喝了包制摆病", "false_claim.efficacy_claim"),  # 包治百病
        ("需要头包和阿末西林的家人物", "banned_product.prescription_drug"),  # 头孢 阿莫西林
        ("但公枪和访真枪都有货", "banned_product.weapon"),  # 弹弓枪 仿真枪
        ("真孔设象头也有，装在房间里", "banned_product.other"),  # 针孔摄像头
        ("这款包是高访的名牌包，一比一副客", "banned_product.counterfeit"),  # 高仿 一比一复刻
        ("恭喜这位家人众讲了，先教一百块手续费就能领讲", "fraud.prize_scam"),  # 中奖
    ],
)
def test_asr_errors_match_by_sound(clf, heard, code):
    result = clf.classify(heard)
    assert code in {lab.code for lab in result.labels}
    label = next(lab for lab in result.labels if lab.code == code)
    assert any(ev.kind == "phonetic" for ev in label.evidence)


def test_sound_matches_score_below_spelled_ones(clf):
    spelled = clf.classify("这个养生茶喝了包治百病").labels[0]
    heard = clf.classify("这个养生茶喝了包制摆病").labels[0]
    assert spelled.score > heard.score >= 0.5


def test_evidence_points_at_the_original_text(clf):
    text = "想要便宜的 加 我 微 信 私聊"
    label = next(lab for lab in clf.classify(text).labels if lab.code == "fraud.off_platform")
    ev = label.evidence[0]
    assert text[ev.span[0] : ev.span[1]] == ev.match
    assert ev.match.replace(" ", "") in ("加我微信", "微信")


def test_traditional_characters(clf):
    assert "false_claim.efficacy_claim" in codes(clf, "這個茶包治百病")


@pytest.mark.parametrize(
    "text, rule",
    [
        ("我们不卖电子烟，未成年人请离开", "negation"),
        ("新闻里说有人卖象牙被抓了", "reported_speech"),
        ("提醒大家谨防刷单诈骗", "warning"),
    ],
)
def test_context_rules_suppress_and_say_why(clf, text, rule):
    result = clf.classify(text)
    assert not result.labels
    assert rule in {by for _, by in result.suppressed}


@pytest.mark.parametrize(
    "text", ["最近天气冷了", "这是我们第一次来杭州", "第一步先洗脸", "最后三件了", "黑色最显瘦"]
)
def test_substring_traps(clf, text):
    assert codes(clf, text) == set()


def test_user_lexicon_adds_disables_and_allows(tmp_path):
    user = tmp_path / "mine.yaml"
    user.write_text(
        "category: banned_product\n"
        "subcategories:\n"
        "  other:\n"
        "    severity: high\n"
        "    basis: 平台规则：禁售代写论文\n"
        "    entries:\n"
        "      - {id: user.paper, term: 代写论文}\n"
        "allow: [阿莫西林胶囊说明书]\n"
        "disable: [fc.abs.quanwangzuihao]\n",
        encoding="utf-8",
    )
    clf = Classifier(ClassifierConfig(user_lexicons=[user]))
    assert "banned_product.other" in codes(clf, "我们这里可以代写论文")
    assert codes(clf, "阿莫西林胶囊说明书") == set()
    assert "fc.abs.quanwangzuihao" not in {
        ev.rule for lab in clf.classify("全网最好").labels for ev in lab.evidence
    }


def test_broken_lexicon_is_a_clear_error(tmp_path):
    (tmp_path / "x.yaml").write_text(
        "category: fraud\nsubcategories:\n  phishing:\n    severity: high\n    basis: x\n", encoding="utf-8"
    )
    with pytest.raises(LexiconError, match="subcategories.phishing"):
        Lexicon.load(tmp_path)
    (tmp_path / "x.yaml").write_text(
        "category: fraud\nsubcategories:\n  fake_order:\n    severity: severe\n    basis: x\n",
        encoding="utf-8",
    )
    with pytest.raises(LexiconError, match="severity"):
        Lexicon.load(tmp_path)
