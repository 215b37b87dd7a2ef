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


@pytest.fixture(scope="module")
def held_out() -> set[str]:
    """Every dev and test phrasing: corpus items, and what was said in the ASR rows."""
    texts = {plain(r["text"]) for name in ("dev", "test") for r in read_jsonl(CORPUS / f"{name}.jsonl")}
    for name in ("asr.jsonl", "asr_eval.jsonl"):
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


def test_the_evaluation_sentences_are_new_and_only_ever_tested_on():
    """``asr_eval.jsonl``: sentences written for evaluation only, each read aloud once, every row
    in test.  None may be a near-copy of anything the model trains on or is tuned on."""
    sentences = read_jsonl(DATA / "asr_sentences_eval.jsonl")
    rows = read_jsonl(CORPUS / "asr_eval.jsonl")
    assert {r["split"] for r in rows} == {"test"}
    assert sorted(r["group"].removeprefix("asr-") for r in rows) == sorted(s["id"] for s in sentences)
    counts = Counter(lab for r in rows for lab in r["labels"] or ["benign"])
    assert len(counts) == 17 and min(counts.values()) >= 14  # every label, and harmless talk

    seen = [
        r["text"]
        for name in ("train", "dev")
        for r in read_jsonl(CORPUS / f"{name}.jsonl")
        if r["aug"] == "none"
    ]
    seen += [
        r["reference"]
        for name in ("asr.jsonl", "asr_train.jsonl")
        for r in read_jsonl(CORPUS / name)
        if r["split"] != "test"
    ]
    assert not near_copies(sentences, seen)


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

    corpus = [r["text"] for name in ("train", "dev", "test") for r in read_jsonl(CORPUS / f"{name}.jsonl")]
    corpus += [
        r["reference"]
        for name in ("asr.jsonl", "asr_train.jsonl", "asr_eval.jsonl")
        for r in read_jsonl(CORPUS / name)
    ]
    assert not near_copies(said, corpus)
