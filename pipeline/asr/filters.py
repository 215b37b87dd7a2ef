"""Clean-up of Whisper output: simplified characters and hallucination flags.

Whisper base, asked for Chinese, sometimes answers in traditional characters, and on music or
silence it "hears" phrases from its subtitle-laden training data (字幕由Amara.org社群提供) or
loops on one phrase.  Such text is flagged with a reason instead of being silently dropped.
"""

from __future__ import annotations

import functools
import re
import unicodedata

from pipeline.config import HallucinationConfig


@functools.cache
def _t2s():
    import opencc

    return opencc.OpenCC("t2s")


def to_simplified(text: str) -> str:
    """Traditional → simplified Chinese (OpenCC t2s), a backstop for the initial prompt."""
    return _t2s().convert(text) if text else text


def _squash(text: str) -> str:
    """Lower-case, full-width → half-width, no spaces or punctuation: for phrase lookups."""
    text = unicodedata.normalize("NFKC", text).lower()
    return "".join(ch for ch in text if ch.isalnum())


def repetition_share(text: str, min_repeats: int) -> float:
    """Share of ``text`` taken by the longest run of one phrase repeated ``min_repeats``+ times."""
    squashed = _squash(text)
    if not squashed:
        return 0.0
    pattern = re.compile(rf"(.{{1,12}}?)\1{{{min_repeats - 1},}}")
    longest = max((len(m.group(0)) for m in pattern.finditer(squashed)), default=0)
    return longest / len(squashed)


def hallucination_reason(
    text: str, avg_logprob: float, no_speech_prob: float, config: HallucinationConfig
) -> str:
    """Why ``text`` looks like a Whisper hallucination, or "" when it looks like speech."""
    if not text.strip():
        return "empty"
    squashed = _squash(text)
    for phrase in config.phrases:
        key = _squash(phrase)
        # only when the phrase is most of the text: "谢谢观看，加我微信" is still speech
        if key and key in squashed and len(key) >= 0.5 * len(squashed):
            return f"subtitle-credit phrase: {phrase}"
    if no_speech_prob > config.no_speech_prob and avg_logprob < config.logprob_threshold:
        return f"no speech (no_speech_prob={no_speech_prob:.2f}, avg_logprob={avg_logprob:.2f})"
    if repetition_share(text, config.max_repeats) >= 0.5:
        return "repetition loop"
    return ""
