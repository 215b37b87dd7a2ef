"""The local runner streams: decoding and VAD run in a thread ahead of ASR, windows go to the
decoders as they come, and the records are those of decoding each window on its own."""

from __future__ import annotations

import threading

import pytest
from conftest import CLIP

from pipeline.config import load_config
from pipeline.runners import local
from pipeline.runners.local import Progress, run_local
from pipeline.segment import Window
from pipeline.stages import AsrStage, Prefetch, PrepareStage


class Collect:
    def __init__(self) -> None:
        self.results = []

    def submit(self, result) -> None:
        self.results.append(result)


def small(*overrides: str):
    return load_config(overrides=["asr.window_s=5", *overrides])  # the clip: three windows


def test_prefetch_gives_the_same_items_and_raises_where_the_source_did():
    assert list(Prefetch(iter(range(50)), depth=2)) == list(range(50))

    def broken():
        yield from range(3)
        raise ValueError("decoder crashed")

    got = []
    with pytest.raises(ValueError, match="decoder crashed"):
        for x in Prefetch(broken(), depth=1):
            got.append(x)
    assert got == [0, 1, 2]


def test_prefetch_closed_early_ends_its_source():
    ended = threading.Event()

    def endless():
        try:
            n = 0
            while True:
                yield n
                n += 1
        finally:
            ended.set()

    items = Prefetch(endless(), depth=2)
    assert next(items) == 0
    items.close()
    assert ended.is_set()
    with pytest.raises(StopIteration):
        next(items)


@pytest.mark.parametrize(
    "overrides", [(), ("asr.batch_size=1",), ("asr.batch_size=3", "asr.batch_mode=batched")]
)
def test_streamed_run_gives_the_records_of_one_window_at_a_time(overrides):
    """Transcripts (text, words, times) of the streaming local runner, side by side (default),
    one at a time or batched, against each window decoded alone after the whole file was
    prepared (how bench asr measured livemod before)."""
    config = small(*overrides)
    out = Collect()
    run_local([str(CLIP)], config, out, Progress(enabled=False), classify=False)
    (result,) = out.results
    assert result.ok and not result.failures
    windows = list(PrepareStage(config).process(str(CLIP)))[1:]
    assert len(windows) == 3
    alone = AsrStage(config.asr.model_copy(update={"batch_size": 1, "batch_mode": "parallel"}))
    alone.setup()
    expected = [t for w in windows for t in alone.process(w)]
    got = result.transcripts
    assert [t.utterance for t in got] == [t.utterance for t in expected]
    if "asr.batch_mode=batched" in overrides:  # one batched pass: no temperature fallback
        assert all(t.text for t in got)
    else:
        assert [(t.text, t.words) for t in got] == [(t.text, t.words) for t in expected]


def test_asr_starts_before_the_file_is_prepared(monkeypatch):
    """The runner hands the first window to ASR while the rest of the file is still being
    decoded: the preparer, after its first window, waits until ASR has begun on it (a
    runner that prepared the whole file first would leave it waiting until the timeout)."""
    events: list[str] = []
    asr_began = threading.Event()
    real_prepare, real_asr = PrepareStage.process, AsrStage.process

    def prepare(self, source):
        for item in real_prepare(self, source):
            yield item
            if isinstance(item, Window):
                events.append(f"prepared {item.utterances[0].index}")
                if item.utterances[0].index == 0:
                    events.append("ASR began in time" if asr_began.wait(120) else "ASR never began")
        events.append("prepare finished")

    def asr(self, window):
        events.append(f"asr {window.utterances[0].index}")
        asr_began.set()
        return real_asr(self, window)

    monkeypatch.setattr(PrepareStage, "process", prepare)
    monkeypatch.setattr(AsrStage, "process", asr)
    monkeypatch.setattr(local, "PREFETCH_WINDOWS", 1)
    out = Collect()
    run_local([str(CLIP)], small(), out, Progress(enabled=False), classify=False)
    assert "ASR began in time" in events, events
    assert events.index("asr 0") < events.index("prepare finished"), events
    assert len(out.results[0].transcripts) == 3


def test_a_failing_first_try_is_retried_alone_and_counted(monkeypatch):
    """A window that fails on the decoders' threads is tried again on its own: ray.max_tries
    tries in all, then recorded as failed; the other windows are moderated."""
    monkeypatch.setenv("LIVEMOD_FAULTS", "asr.raise=clip:1")
    out = Collect()
    run_local([str(CLIP)], small(), out, Progress(enabled=False), classify=False)
    (result,) = out.results
    (failure,) = result.failures
    assert failure.tries == 3 and "injected fault" in failure.reason
    assert len(result.transcripts) == 2
