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


@pytest.fixture(scope="module")
def held_out() -> set[str]:
    """Every dev and test phrasing: corpus items, and what was said in the ASR rows."""
    texts = {plain(r["text"]) for name in ("dev", "test") for r in read_jsonl(CORPUS / f"{name}.jsonl")}
    texts |= {plain(r["reference"]) for r in read_jsonl(CORPUS / "asr.jsonl") if r["split"] != "train"}
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
