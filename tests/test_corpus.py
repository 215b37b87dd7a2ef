"""The labelled corpus keeps its held-out splits held out.

The classifier's test figures mean something only while nothing the model trains on was read
from, or spoken from, a dev or test sentence.  These checks read the committed files.
"""

import re
from collections import Counter
from pathlib import Path

import pytest
from conftest import read_jsonl

DATA = Path(__file__).resolve().parent.parent / "data"
CORPUS = DATA / "corpus"
# test splits scored and set aside (trained on by nothing; they tune the fusion): id letter, size
SET_ASIDE = {"test2": ("h", 768), "test6": ("p", 744), "test10": ("v", 728)}
# test splits scored once, then trained on as written and as read aloud (train_extra.jsonl)
TRAINED = {
    "test3": ("k", 745),
    "test4": ("m", 762),
    "test5": ("n", 758),
    "test7": ("q", 739),
    "test8": ("r", 723),
    "test9": ("u", 722),
}
# test splits scored and kept for development: read by no script yet (the next retrain's)
KEPT = {"test11": ("w", 704), "test13": ("y", 714)}


def plain(text: str) -> str:
    return re.sub(r"[\s，,。.!！?？、]", "", text)


def near_copies(sentences: list[dict], texts: list[str]) -> list[tuple[str, float]]:
    """Sentences whose character bigrams overlap one of ``texts`` by 0.7 or more (Jaccard): the
    rule ``scripts/build_corpus.py`` keeps train-only material apart from held-out phrasings by."""
    import sys

    sys.path.insert(0, str(DATA.parent / "scripts"))
    from build_corpus import BigramIndex

    index = BigramIndex([plain(t) for t in texts if plain(t)])
    near = [(s["text"], index.nearest(plain(s["text"]))[0]) for s in sentences]
    return [x for x in near if x[1] >= 0.7]


def said_in(splits: tuple[str, ...], asr_files: tuple[str, ...]) -> list[str]:
    """Every text of these corpus splits, and what was said in every row of these ASR files."""
    texts = [r["text"] for name in splits for r in read_jsonl(CORPUS / f"{name}.jsonl")]
    return texts + [r["reference"] for name in asr_files for r in read_jsonl(CORPUS / name)]


def assert_read_aloud_once(said: list[dict], rows: list[dict], split: str) -> None:
    """``rows``: each of the sentences ``said`` read aloud once, as written, every row marked
    ``split``.  Failures give counts only (a sealed split's sentences stay unread)."""
    by_id = {s["id"]: s for s in said}
    same_ids = sorted(r["group"].removeprefix("asr-") for r in rows) == sorted(by_id)
    said_as_written = sum(r["reference"] == by_id[r["group"].removeprefix("asr-")]["text"] for r in rows)
    assert ({r["split"] for r in rows}, same_ids, said_as_written) == ({split}, True, len(said))


def near_copies_of_the_rest(said: list[dict], splits: tuple[str, ...]) -> int:
    """How many of the sentences ``said`` are near-copies of what the model trains or is tuned on
    (train and everything added to it, dev, every sentence read aloud for them, the scored test
    splits, those kept for development included) and of these corpus ``splits`` besides, with
    their sentences and transcripts."""
    seen = said_in(
        ("train", "train_extra", "dev", *splits, *SET_ASIDE),
        (
            "asr.jsonl",
            "asr_train.jsonl",
            "asr_eval.jsonl",
            *(f"asr_{n}.jsonl" for n in (*splits, *TRAINED, *SET_ASIDE, *KEPT)),
        ),
    )
    seen += [
        s["text"]
        for name in (*splits, *TRAINED, *SET_ASIDE, *KEPT)
        for s in read_jsonl(DATA / name / "sentences.jsonl")
    ]
    return len(near_copies(said, seen))


@pytest.fixture(scope="module")
def held_out() -> set[str]:
    """Every dev and test phrasing, and the set-aside test splits' (which tune the fusion and are
    trained on by nothing) and those kept for development: corpus items, sentences, and what was
    said in their ASR rows."""
    texts = {
        plain(r["text"]) for name in ("dev", "test", *SET_ASIDE) for r in read_jsonl(CORPUS / f"{name}.jsonl")
    }
    for name in ("asr.jsonl", "asr_test.jsonl"):
        texts |= {plain(r["reference"]) for r in read_jsonl(CORPUS / name) if r["split"] in ("dev", "test")}
    texts |= {plain(s["text"]) for name in KEPT for s in read_jsonl(DATA / name / "sentences.jsonl")}
    return texts | {
        plain(r["reference"])
        for name in (*SET_ASIDE, *KEPT)
        for r in read_jsonl(CORPUS / f"asr_{name}.jsonl")
    }


def test_train_rows_of_real_asr_were_spoken_from_train_sentences_only(held_out):
    picked = read_jsonl(DATA / "asr_sentences_train.jsonl")
    train = {plain(r["text"]) for r in read_jsonl(CORPUS / "train.jsonl") if r["aug"] == "none"}
    assert len(picked) >= 1000
    assert all(plain(s["text"]) in train for s in picked)
    assert not {plain(s["text"]) for s in picked} & held_out

    asr_train = read_jsonl(CORPUS / "asr_train.jsonl")
    assert {r["split"] for r in asr_train} == {"train"}
    said = {s["id"]: s for s in picked}
    for r in asr_train:
        sentence = said[r["group"].removeprefix("asr-")]
        assert r["reference"] == sentence["text"] and r["labels"] == sentence["labels"]
    # every label is read aloud, and harmless talk too
    counts = Counter(lab for r in asr_train for lab in r["labels"] or ["benign"])
    assert len(counts) == 17 and min(counts.values()) >= 40


def test_no_train_item_repeats_a_held_out_phrasing(held_out):
    for name in ("train.jsonl", "train_extra.jsonl"):
        rows = read_jsonl(CORPUS / name)
        assert not {plain(r["text"]) for r in rows} & held_out
        assert not {plain(r["reference"]) for r in rows if "reference" in r} & held_out


def test_the_test_split_is_sentences_written_for_it_and_only_ever_tested_on():
    """``data/test/``: the test split (the twelfth) is sentences written for it alone, as written,
    disguised and read aloud once; none may be a near-copy of anything the model trains on or is
    tuned on (train and everything added to it, dev, every sentence read aloud for them, and the
    eleven earlier test splits).  Failures give counts only."""
    said = read_jsonl(DATA / "test" / "sentences.jsonl")
    assert (len(said), {s["id"][0] for s in said}) == (701, {"x"})
    counts = Counter(lab for s in said for lab in s["labels"] or ["benign"])
    assert (len(counts), min(counts.values()) >= 20) == (17, True)  # every label, and harmless talk
    assert counts["benign"] >= len(said) * 0.45

    test = read_jsonl(CORPUS / "test.jsonl")
    same_groups = {r["group"] for r in test} == {f"test-{s['id']}" for s in said}
    as_written = {r["group"].removeprefix("test-"): r for r in test if r["aug"] == "none"}
    kept = sum(plain(as_written[s["id"]]["text"]) == plain(s["text"]) for s in said)
    disguised = sum(r["aug"] != "none" for r in test)  # disguised copies, like the first test split
    assert (same_groups, kept, disguised >= len(said)) == (True, len(said), True)

    assert_read_aloud_once(said, read_jsonl(CORPUS / "asr_test.jsonl"), "test")
    near = near_copies_of_the_rest(said, ())
    assert near == 0


@pytest.mark.parametrize("name", sorted(KEPT))
def test_a_test_split_kept_for_development_is_read_by_nothing(name):
    """A test split scored and kept for development (the eleventh, ``data/test11``, and the
    thirteenth, ``data/test13``, which chose between two models): its sentences and transcripts
    (``asr_test11.jsonl``, ``asr_test13.jsonl``, retired) are in no corpus split, so nothing
    trains or tunes on them until a retrain adds them (``held_out`` keeps train clear of them)."""
    letter, size = KEPT[name]
    said = read_jsonl(DATA / name / "sentences.jsonl")
    assert (len(said), {s["id"][0] for s in said}) == (size, {letter})
    assert_read_aloud_once(said, read_jsonl(CORPUS / f"asr_{name}.jsonl"), "retired")
    groups = {f"test-{s['id']}" for s in said} | {f"asr-{s['id']}" for s in said}
    for split in ("train", "train_extra", "dev", "test", *SET_ASIDE):
        assert not groups & {r["group"] for r in read_jsonl(CORPUS / f"{split}.jsonl")}


def test_the_second_test_split_is_trained_on_by_nothing():
    """The second test split was scored twice, then chose between retrained models and tunes
    the fusion thresholds with dev: it is in no split the model trains on."""
    said = read_jsonl(DATA / "test2" / "sentences.jsonl")
    assert len(said) == 768 and all(s["id"].startswith("h") for s in said)
    test2 = read_jsonl(CORPUS / "test2.jsonl")
    assert {r["group"] for r in test2} == {f"test-{s['id']}" for s in said}
    rows = read_jsonl(CORPUS / "asr_test2.jsonl")
    assert {r["split"] for r in rows} == {"retired"}  # read by no split of train_classifier
    assert sorted(r["reference"] for r in rows) == sorted(s["text"] for s in said)
    texts = {plain(r["text"]) for r in test2 + rows}
    for name in ("train", "train_extra", "dev", "test", *(n for n in SET_ASIDE if n != "test2")):
        shared = len(texts & {plain(r["text"]) for r in read_jsonl(CORPUS / f"{name}.jsonl")})
        assert shared == 0, name  # a count: the test split's texts stay unread


@pytest.mark.parametrize("name", [n for n in SET_ASIDE if n != "test2"])
def test_a_test_split_set_aside_is_trained_on_by_nothing(name):
    """The sixth and tenth test splits were scored once, then read for their errors; they tune
    the fusion thresholds with dev and the second, and are in no split the model trains on."""
    letter, size = SET_ASIDE[name]
    said = read_jsonl(DATA / name / "sentences.jsonl")
    assert len(said) == size and all(s["id"].startswith(letter) for s in said)
    split = read_jsonl(CORPUS / f"{name}.jsonl")
    assert {r["group"] for r in split} == {f"test-{s['id']}" for s in said}
    rows = read_jsonl(CORPUS / f"asr_{name}.jsonl")
    assert_read_aloud_once(said, rows, "retired")  # read by no split of train_classifier
    by_id = {s["id"]: s for s in said}
    texts = {plain(r["text"]) for r in split + rows}
    for other in ("train", "train_extra", "dev", "test", *(n for n in SET_ASIDE if n != name)):
        shared = len(texts & {plain(r["text"]) for r in read_jsonl(CORPUS / f"{other}.jsonl")})
        assert shared == 0, other  # a count: the test split's texts stay unread
    if name != "test6":
        return
    # a second annotator's extra labels (data/README.md), for every violating sentence
    second = read_jsonl(DATA / name / "second_labels.jsonl")
    assert sorted(r["id"] for r in second) == sorted(s["id"] for s in said if s["labels"])
    codes = {lab for s in said for lab in s["labels"]}
    assert all(set(r["extra"]) <= codes - set(by_id[r["id"]]["labels"]) for r in second)


@pytest.mark.parametrize("name", TRAINED)
def test_a_test_split_scored_once_trains_the_model_now(name):
    """The third, fourth, fifth, seventh, eighth and ninth test splits were scored once; they train the model now
    (``train_extra.jsonl``): every sentence as written and each one's transcript."""
    letter, size = TRAINED[name]
    said = read_jsonl(DATA / name / "sentences.jsonl")
    assert len(said) == size and all(s["id"].startswith(letter) for s in said)
    assert not (CORPUS / f"{name}.jsonl").exists()  # set aside no more
    rows = read_jsonl(CORPUS / f"asr_{name}.jsonl")
    assert sorted(r["reference"] for r in rows) == sorted(s["text"] for s in said)
    extra = read_jsonl(CORPUS / "train_extra.jsonl")
    groups = Counter(r["group"] for r in extra)
    assert all(groups[s["id"]] >= 1 for s in said)
    texts = {r["text"] for r in extra}
    assert all(r["text"] in texts for r in rows)


def test_the_first_test_split_and_the_fresh_sentences_train_the_model():
    """Written sentences once held out, now train (``train_extra.jsonl``): the first test split,
    with its transcripts (``retired`` rows of ``asr.jsonl`` and ``asr_eval.jsonl``), and
    ``data/fresh``, as written, disguised and read aloud."""
    extra = read_jsonl(CORPUS / "train_extra.jsonl")
    assert {r["split"] for r in extra} == {"train"}
    texts = Counter(r["text"] for r in extra)
    retired = [
        r for f in ("asr.jsonl", "asr_eval.jsonl") for r in read_jsonl(CORPUS / f) if r["split"] == "retired"
    ]
    assert len(retired) == 128 + 393 and all(texts[r["text"]] for r in retired)

    said = read_jsonl(DATA / "fresh" / "sentences.jsonl")
    rows = read_jsonl(DATA / "fresh" / "asr.jsonl")
    assert sorted(r["group"].removeprefix("asr-") for r in rows) == sorted(s["id"] for s in said)
    assert all(r["reference"] == s["text"] and r["labels"] == s["labels"] for r, s in zip(rows, said))
    assert all(texts[r["text"]] for r in rows)
    groups = Counter(r["group"] for r in extra)
    assert all(groups[s["id"]] >= 1 for s in said)  # as written (and its disguised copies)
    assert sum(r["aug"] not in ("none", "asr") for r in extra) >= len(said)
    counts = Counter(lab for s in said for lab in s["labels"] or ["benign"])
    assert len(counts) == 17 and min(counts.values()) >= 17  # every label, and harmless talk


def test_the_stock_talk_is_held_back_and_its_check_set_is_apart_from_everything():
    """``data/stock``: honest stock talk (只剩三件了) and made-up scarcity or prices with their
    tell, written for training and read aloud; held back (a model trained with it measured worse
    on the thirteenth split: README), so no corpus file has it.  ``tests/data/stock_talk*.jsonl``,
    written apart by another writer, checks the shipped model (test_classifier): no corpus file,
    no held-back line and no sentence under ``data/`` is near it."""
    said = read_jsonl(DATA / "stock" / "sentences.jsonl")
    heard = read_jsonl(DATA / "stock" / "asr.jsonl")  # one clip's transcript came out empty
    by_id = {s["id"]: s for s in said}
    assert len(said) == 339 and all(s["id"].startswith("z") for s in said)
    assert len(heard) == 338 and {r["split"] for r in heard} == {"train"}
    assert all(r["reference"] == by_id[r["group"].removeprefix("asr-")]["text"] for r in heard)
    honest = [s for s in said if not s["labels"]]
    assert len(honest) == 240 and sum(len(plain(s["text"])) <= 10 for s in honest) >= 120
    rows = [r for f in [*CORPUS.glob("*.jsonl"), *DATA.glob("*/sentences.jsonl")] for r in read_jsonl(f)]
    groups = {r.get("group") for r in rows}
    assert not groups & ({s["id"] for s in said} | {f"asr-{s['id']}" for s in said})

    check = read_jsonl(DATA.parent / "tests" / "data" / "stock_talk.jsonl")
    check_heard = read_jsonl(DATA.parent / "tests" / "data" / "stock_talk_asr.jsonl")
    assert len(check) == 119 and all(s["id"].startswith("j") for s in check)
    twice = Counter(r["reference"] for r in check_heard)  # one clip's transcript came out empty
    assert len(check_heard) == 237 and set(twice) == {s["text"] for s in check} and max(twice.values()) == 2
    everything = [r["text"] for r in rows] + [r["reference"] for r in rows if "reference" in r]
    assert near_copies(check, everything) == []  # nothing said or written near a check line


def test_a_disguise_the_normaliser_undoes_is_trained_on_once():
    """``train_classifier.distinct``: the model reads normalised text, so a traditional or
    separated copy that normalises to its original is the same row; trained on once, it neither
    weighs its sentence double nor costs time.  The same words with other labels stay."""
    import importlib.util

    from pipeline.classify.normalize import Normalizer, VariantTable
    from pipeline.config import load_config

    spec = importlib.util.spec_from_file_location(
        "train_classifier", DATA.parent / "scripts" / "train_classifier.py"
    )
    train = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(train)
    normalize = Normalizer(VariantTable.load(load_config().classifier.variant_table))
    rows = [
        {"text": "这个国家级认证的面霜，全网最低价", "labels": ["false_claim.absolute_term"]},
        {"text": "這個國家級認證的面霜，全網最低價", "labels": ["false_claim.absolute_term"]},
        {"text": "这个国⭐家级认证的面⭐霜，全网最低价", "labels": ["false_claim.absolute_term"]},
        {"text": "这个guo家级认证的面霜，全网最低价", "labels": ["false_claim.absolute_term"]},
        {"text": "这个国家级认证的面霜，全网最低价", "labels": []},
    ]
    kept, texts = train.distinct(rows, [normalize(r["text"]).text for r in rows])
    assert [rows.index(r) for r in kept] == [0, 3, 4]
    assert texts == [normalize(rows[i]["text"]).text for i in (0, 3, 4)]


def test_asr_like_copies_make_our_whispers_mistakes_learned_from_trained_transcripts_only():
    """``build_corpus.AsrSimulator``: train-only copies garbled as our Whisper garbles noisy
    speech (its character error rate, and what it writes for what), learned from the transcripts
    of sentences the model trains on, never from a dev, tuning or test transcript."""
    import difflib
    import statistics
    import sys

    sys.path.insert(0, str(DATA.parent / "scripts"))
    from build_corpus import TRAINED_TRANSCRIPTS, transcript_pairs

    for name in ("asr_test.jsonl", *(f"asr_{n}.jsonl" for n in SET_ASIDE)):
        assert name not in TRAINED_TRANSCRIPTS
    assert not {"dev", "test"} & {s for splits in TRAINED_TRANSCRIPTS.values() for s in splits}
    pairs = transcript_pairs(CORPUS)
    han = re.compile(r"[\u4e00-\u9fff]")
    trained = read_jsonl(CORPUS / "train_extra.jsonl") + read_jsonl(CORPUS / "asr_train.jsonl")
    trained += [r for r in read_jsonl(CORPUS / "asr.jsonl") if r["split"] == "train"]
    trained_texts = {"".join(han.findall(r["text"])) for r in trained}
    assert all(heard in trained_texts for _, heard in pairs)  # the model trains on each of them
    assert len(pairs) >= 5000

    def cer(said: str, heard: str) -> float:
        ops = difflib.SequenceMatcher(None, said, heard, autojunk=False).get_opcodes()
        return sum(max(i2 - i1, j2 - j1) for op, i1, i2, j1, j2 in ops if op != "equal") / max(1, len(said))

    rows = read_jsonl(CORPUS / "train.jsonl")
    written = {r["id"]: r for r in rows if r["aug"] == "none"}
    copies = [r for r in rows if r["aug"] == "asr_sim"]
    assert len(copies) >= 0.5 * len(written)
    assert all(r["labels"] == written[r["id"].removesuffix("-asr_sim")]["labels"] for r in copies)
    simulated = [
        cer(
            "".join(han.findall(written[r["id"].removesuffix("-asr_sim")]["text"])),
            "".join(han.findall(r["text"])),
        )
        for r in copies
    ]
    real = [cer(a, b) for a, b in pairs]
    # as garbled as the real transcripts, within a few points (the unchanged copies are not kept)
    assert abs(statistics.median(simulated) - statistics.median(real)) < 0.06
    assert 0.12 <= statistics.median(simulated) <= 0.3
