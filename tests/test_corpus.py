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


@pytest.fixture(scope="module")
def held_out() -> set[str]:
    """Every dev and test phrasing (and the first test split's, set aside): corpus items, and what
    was said in the ASR rows."""
    texts = {
        plain(r["text"]) for name in ("dev", "test", "retired") for r in read_jsonl(CORPUS / f"{name}.jsonl")
    }
    for name in ("asr.jsonl", "asr_eval.jsonl", "asr_test.jsonl"):
        texts |= {plain(r["reference"]) for r in read_jsonl(CORPUS / name) if r["split"] != "train"}
    return texts


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
    train = {plain(r["text"]) for r in read_jsonl(CORPUS / "train.jsonl")}
    assert not train & held_out


def test_the_test_split_is_sentences_written_for_it_and_only_ever_tested_on():
    """``data/test/``: the test split is sentences written for it alone, as written, disguised
    and read aloud once; none may be a near-copy of anything the model trains on or is tuned on
    (train and dev, every sentence read aloud for them, the fresh sentences the context rules
    were checked on, and the first test split, which decided changes)."""
    said = read_jsonl(DATA / "test" / "sentences.jsonl")
    counts = Counter(lab for s in said for lab in s["labels"] or ["benign"])
    assert len(counts) == 17 and min(counts.values()) >= 23  # every label, and harmless talk
    assert counts["benign"] >= len(said) * 0.45

    test = read_jsonl(CORPUS / "test.jsonl")
    assert {r["group"] for r in test} == {f"test-{s['id']}" for s in said}
    as_written = {r["group"].removeprefix("test-"): r for r in test if r["aug"] == "none"}
    assert all(plain(as_written[s["id"]]["text"]) == plain(s["text"]) for s in said)
    assert sum(r["aug"] != "none" for r in test) >= len(said)  # disguised copies, like the first test split

    rows = read_jsonl(CORPUS / "asr_test.jsonl")
    assert {r["split"] for r in rows} == {"test"}
    assert sorted(r["group"].removeprefix("asr-") for r in rows) == sorted(s["id"] for s in said)
    by_id = {s["id"]: s for s in said}
    assert all(r["reference"] == by_id[r["group"].removeprefix("asr-")]["text"] for r in rows)

    seen = said_in(("train", "dev", "retired"), ("asr.jsonl", "asr_train.jsonl", "asr_eval.jsonl"))
    seen += [s["text"] for s in read_jsonl(DATA / "fresh" / "sentences.jsonl")]
    assert not near_copies(said, seen)


def test_the_first_test_split_is_set_aside():
    """The first test split decided too many changes to stay a test: its groups and every
    transcript of its sentences are in no split now (``retired``), and train is what the
    shipped model was trained on."""
    evaluation = read_jsonl(CORPUS / "asr_eval.jsonl")
    assert len(evaluation) == 393 and {r["split"] for r in evaluation} == {"retired"}
    assert {r["split"] for r in read_jsonl(CORPUS / "asr.jsonl")} == {"train", "dev", "retired"}
    retired = {r["group"] for r in read_jsonl(CORPUS / "retired.jsonl")}
    for name in ("train", "dev", "test"):
        assert not retired & {r["group"] for r in read_jsonl(CORPUS / f"{name}.jsonl")}
    assert all(g.startswith("test-") for g in {r["group"] for r in read_jsonl(CORPUS / "test.jsonl")})


def test_the_fresh_sentences_copy_nothing_in_the_corpus():
    """``data/fresh/``: sentences written apart from the corpus and read aloud once, the set the
    lexicon and context rules are checked on.  None may be a near-copy of a corpus text or of a
    sentence read aloud for the corpus, so they show how the classifier meets new phrasings."""
    said = read_jsonl(DATA / "fresh" / "sentences.jsonl")
    rows = read_jsonl(DATA / "fresh" / "asr.jsonl")
    assert sorted(r["group"].removeprefix("asr-") for r in rows) == sorted(s["id"] for s in said)
    assert all(r["reference"] == s["text"] and r["labels"] == s["labels"] for r, s in zip(rows, said))
    counts = Counter(lab for s in said for lab in s["labels"] or ["benign"])
    assert len(counts) == 17 and min(counts.values()) >= 17  # every label, and harmless talk

    corpus = said_in(
        ("train", "dev", "test"), ("asr.jsonl", "asr_train.jsonl", "asr_eval.jsonl", "asr_test.jsonl")
    )
    assert not near_copies(said, corpus)
