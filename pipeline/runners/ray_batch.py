"""Run the batch pipeline on Ray: the only module of the batch path that imports ray.

Layout: a small pool of PrepareStage actors streams windows out of each source (a Ray
streaming generator with back-pressure, so a four-hour file never sits in memory), a pool of
ASR actors (each loads Whisper once) transcribes them, and a classifier actor labels the
transcripts.  The driver keeps at most ``ray.max_inflight_windows`` windows in flight and
writes each stream as soon as its last window is done, so memory stays flat however many
files there are.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable

import ray

from pipeline.config import Config
from pipeline.records import Stream
from pipeline.runners.local import Progress, StreamState
from pipeline.segment import Window
from pipeline.stages import AsrStage, ClassifyStage, Failure, PrepareStage

log = logging.getLogger(__name__)


@ray.remote(num_cpus=0.5)
class PrepareActor:
    def __init__(self, config: Config) -> None:
        self.stage = PrepareStage(config)
        self.stage.setup()

    def process(self, source: str):
        yield from self.stage.process(source)


@ray.remote(num_cpus=1)
class AsrActor:
    def __init__(self, config: Config) -> None:
        self.stage = AsrStage(config.asr)
        self.stage.setup()

    def process(self, window: Window):
        return self.stage.process(window)

    def process_batch(self, windows: list[Window]):
        """Several windows of one stream decoded together; their transcripts in order."""
        return [t for transcripts in self.stage.process_many(windows) for t in transcripts]


@ray.remote(num_cpus=0)
class ClassifyActor:
    def __init__(self, config: Config) -> None:
        self.stage = ClassifyStage(config)
        self.stage.setup()

    def process(self, transcripts, source: str):
        return self.stage.process(transcripts, source)


def init_ray(config: Config) -> None:
    """Join a cluster (``ray.address``) or start a quiet local instance."""
    if ray.is_initialized():
        return
    os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")
    kwargs = dict(
        ignore_reinit_error=True, log_to_driver=False, include_dashboard=False, configure_logging=False
    )
    # a local instance turns token auth on by itself and says so on every start: keep it quiet
    logging.getLogger("ray._private.authentication.authentication_token_setup").setLevel(logging.ERROR)
    if config.ray.address:
        ray.init(address=config.ray.address, **kwargs)
    else:
        ray.init(num_cpus=config.ray.num_cpus or os.cpu_count(), **kwargs)


class _Pool:
    """Round-robin over the least busy actors."""

    def __init__(self, actors: list) -> None:
        self.actors = actors
        self.busy = [0] * len(actors)

    def take(self) -> int:
        i = min(range(len(self.actors)), key=self.busy.__getitem__)
        self.busy[i] += 1
        return i

    def release(self, i: int) -> None:
        self.busy[i] -= 1


class RayBatch:
    """The driver loop: feed sources to preparers, windows to ASR, results to the writer."""

    def __init__(self, config: Config, writer, progress: Progress) -> None:
        init_ray(config)
        self.config, self.writer, self.progress = config, writer, progress
        rc = config.ray
        self.preparers = [PrepareActor.remote(config) for _ in range(rc.prepare_workers)]
        self.free = list(range(len(self.preparers)))
        self.asr = _Pool([AsrActor.remote(config) for _ in range(config.asr.workers)])
        self.classifier = ClassifyActor.remote(config)
        self.backlog = rc.max_inflight_windows
        self.batch_size = config.asr.batch_size
        self.generators: dict = {}  # ObjectRefGenerator -> [StreamState, preparer, item count, batch]
        self.inflight: dict = {}  # violations ref -> (StreamState, item, transcripts ref, actor)
        self.open: dict[int, int] = {}  # id(StreamState) -> windows in flight

    def run(self, sources: Iterable[str]) -> None:
        todo = iter(sources)
        more = True
        while True:
            while more and self.free:
                source = next(todo, None)
                more = source is not None
                if more:
                    self._start(source)
            if not self.generators and not self.inflight:
                break
            waitables = list(self.inflight)
            if len(self.inflight) < self.backlog:
                waitables += list(self.generators)
            ready, _ = ray.wait(waitables, num_returns=1, timeout=1.0)
            self.writer.poll()
            for ref in ready:
                if ref in self.generators:
                    self._pull(ref)
                else:
                    self._complete(ref)

    def _start(self, source: str) -> None:
        p = self.free.pop()
        gen = (
            self.preparers[p]
            .process.options(num_returns="streaming", _generator_backpressure_num_objects=self.backlog)
            .remote(source)
        )
        state = StreamState(source)
        self.generators[gen] = [state, p, 0, []]
        self.open[id(state)] = 0

    def _pull(self, gen) -> None:
        state, p, k, batch = self.generators[gen]
        try:
            item = ray.get(next(gen))
        except StopIteration:
            item = None
        except Exception as exc:  # the preparer itself crashed
            state.fail(f"preparing failed: {_one_line(exc)}")
            item = None
        if item is None:
            self._dispatch(state, batch)
            del self.generators[gen]
            self.free.append(p)
            self._maybe_finish(state)
            return
        self.generators[gen][2] = k + 1
        if isinstance(item, Failure):
            state.fail(item.reason)
        elif isinstance(item, Stream):
            state.result.stream = item
            self.progress.add_stream(item)
        else:
            batch.append((k, item))
            if len(batch) >= self.batch_size:
                self._dispatch(state, batch)

    def _dispatch(self, state: StreamState, batch: list) -> None:
        """Send windows (one, or a batch of asr.batch_size) to an ASR actor, then the classifier."""
        if not batch:
            return
        actor = self.asr.take()
        if len(batch) == 1:
            t_ref = self.asr.actors[actor].process.remote(batch[0][1])
        else:
            t_ref = self.asr.actors[actor].process_batch.remote([w for _, w in batch])
        v_ref = self.classifier.process.remote(t_ref, state.result.source)
        self.inflight[v_ref] = (state, batch[0][0], t_ref, actor)
        self.open[id(state)] += 1
        batch.clear()

    def _complete(self, ref) -> None:
        state, k, t_ref, actor = self.inflight.pop(ref)
        self.asr.release(actor)
        self.open[id(state)] -= 1
        try:
            transcripts = ray.get(t_ref)
            state.add(k, transcripts, ray.get(ref))
            if transcripts:
                self.progress.advance(transcripts[0].utterance.stream_id, transcripts[-1].utterance.end)
        except Exception as exc:  # a window that crashed ASR or the classifier
            state.fail(f"window {k} failed: {_one_line(exc)}")
        self._maybe_finish(state)

    def _maybe_finish(self, state: StreamState) -> None:
        if self.open.get(id(state)) == 0 and all(g[0] is not state for g in self.generators.values()):
            del self.open[id(state)]
            result = state.finish()
            self.progress.finish_stream(result)
            self.writer.submit(result)


def _one_line(exc: BaseException) -> str:
    cause = getattr(exc, "cause", None) or exc
    text = str(cause).strip().splitlines()
    return f"{type(cause).__name__}: {text[-1][:200] if text else ''}"


def run_ray(sources: Iterable[str], config: Config, writer, progress: Progress) -> None:
    RayBatch(config, writer, progress).run(sources)
