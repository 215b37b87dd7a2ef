"""Run the batch pipeline on Ray: the only module of the batch path that imports ray.

Layout: a small pool of PrepareStage actors streams windows out of each source (a Ray
streaming generator with back-pressure, so a four-hour file never sits in memory), a pool of
ASR actors (each loads Whisper once) transcribes them, and a classifier actor labels the
transcripts.  Each window goes to ASR as soon as the preparer yields it; with
``asr.batch_mode: parallel`` an ASR actor runs ``asr.batch_size`` calls at once (a threaded
actor, one decoder each), so windows are decoded side by side without waiting for a batch to
fill.  The driver keeps at most ``ray.max_inflight_windows`` windows in flight and
writes each stream as soon as its last window is done, so memory stays flat however many
files there are.

Failures: actors are restarted by Ray when they die (``max_restarts``); the driver retries
what they had in flight, up to ``ray.max_tries`` tries per window, then records the window as
failed (stream, times, reason, tries) and goes on with the rest of the stream.  A retry runs
alone, once the workers answer again (after their restart, possibly on another node; the
driver waits for that, up to ``ray.restart_timeout_s``), so a try is only counted when it ran
and a poison window cannot use up the tries of the windows that died with it.  A preparer
that dies mid-stream is started again and skips the items already received; one that keeps
dying at the same place leaves the rest of its stream recorded as a failed segment.
"""

from __future__ import annotations

import logging
import os
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from pipeline import faults
from pipeline.config import Config
from pipeline.records import Stream
from pipeline.runners.local import Progress, StreamState, Tracker, one_line
from pipeline.segment import Window
from pipeline.stages import AsrStage, ClassifyStage, Failure, PrepareStage

log = logging.getLogger(__name__)


# Actors come back when they die (a crash, an OOM kill, a lost node); the driver retries the
# calls they had in flight itself, so that every try of a window is counted (``ray.max_tries``)
# and a window that kills its worker every time is recorded as failed instead of retried forever.
RESTARTABLE = {"max_restarts": -1, "max_task_retries": 0}


@ray.remote(num_cpus=0.5)
class PrepareActor:
    def __init__(self, config: Config) -> None:
        self.stage = PrepareStage(config)
        self.stage.setup()

    def process(self, source: str, skip: int = 0):
        """The stream header and its windows; ``skip``: items the driver already has (a retry)."""
        for i, item in enumerate(self.stage.process(source)):
            if i >= skip:
                yield item


@ray.remote(num_cpus=1)
class AsrActor:
    def __init__(self, config: Config) -> None:
        self.stage = AsrStage(config.asr)
        self.stage.setup()

    def process(self, window: Window):
        return self.stage.process(window)

    def node(self) -> str:
        return ray.get_runtime_context().get_node_id()

    def process_batch(self, windows: list[Window]):
        """Several windows decoded together (``asr.batch_size``): one transcript list per window,
        as separate return values (called with ``num_returns=len(windows)``)."""
        return tuple(self.stage.process_many(windows))


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


def actor_options(**extra) -> dict:
    """Options of the batch actors: restartable, and the test-only fault variables passed on."""
    env = faults.worker_env()
    return RESTARTABLE | ({"runtime_env": {"env_vars": env}} if env else {}) | extra


@ray.remote(num_cpus=0)
def _unreadable(paths: list[str]) -> tuple[str, list[str]]:
    return ray.util.get_node_ip_address(), [p for p in paths if not os.access(p, os.R_OK)]


class InputsUnreachable(OSError):
    """An input the driver reads that some node of the cluster cannot."""


def check_inputs_reachable(sources: list[str], timeout: float = 120.0) -> None:
    """On a cluster, make sure every node reads every local input before any work starts,
    so that a missing mount is one clear error rather than a failure per window."""
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    # as given: a relative path is read from the worker's folder, as the preparers will read it
    paths = [s for s in sources if "://" not in s and os.access(s, os.R_OK)]
    if len(nodes) < 2 or not paths:
        return
    refs = [
        _unreadable.options(
            scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False)
        ).remote(paths)
        for n in nodes
    ]
    for node, ref in zip(nodes, refs):
        ip, missing = ray.get(ref, timeout=timeout)
        if missing:
            more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
            raise InputsUnreachable(
                f"{missing[0]}{more}: not readable on node {ip} ({node['NodeID'][:8]}); put inputs on "
                "storage every node mounts at the same path, or give fsspec URLs (s3://...)"
            )


class _Pool:
    """Round-robin over the least busy actors."""

    def __init__(self, actors: list) -> None:
        self.actors = actors
        self.busy = [0] * len(actors)

    def peek(self) -> int:
        return min(range(len(self.actors)), key=self.busy.__getitem__)

    def take(self, calls: int = 1) -> int:
        """The least busy actor, now counted busy with ``calls`` more calls (each released once)."""
        i = self.peek()
        self.busy[i] += calls
        return i

    def release(self, i: int) -> None:
        self.busy[i] -= 1


@dataclass
class _Prep:
    """A stream being prepared: its state, the preparer, items received, tries so far."""

    state: StreamState
    preparer: int
    received: int = 0
    tries: int = 1


@dataclass
class _Job:
    """A window in ASR and classification."""

    state: StreamState
    k: int
    window: Window
    t_ref: object
    actor: int
    tries: int = 1


class RayBatch:
    """The driver loop: feed sources to preparers, windows to ASR, results to the tracker."""

    def __init__(self, config: Config, writer, progress: Progress, manifest=None, metrics=None) -> None:
        init_ray(config)
        self.config, self.writer, self.progress = config, writer, progress
        self.track = Tracker(writer, progress, manifest, metrics)
        self.metrics = metrics
        rc = config.ray
        self.preparers = [
            PrepareActor.options(**actor_options()).remote(config) for _ in range(rc.prepare_workers)
        ]
        self.free = list(range(len(self.preparers)))
        # spread over the nodes: a lost node takes as little of the pool with it as possible
        asr_options = actor_options(scheduling_strategy="SPREAD")
        # parallel: windows go one per call, up to batch_size calls decoded at once per actor
        if config.asr.side_by_side > 1:
            asr_options["max_concurrency"] = config.asr.side_by_side
        self.asr = _Pool([AsrActor.options(**asr_options).remote(config) for _ in range(config.asr.workers)])
        self.classifier = ClassifyActor.options(**actor_options()).remote(config)
        self.backlog = rc.max_inflight_windows
        # batched: a batch must fit in the windows allowed in flight, or the driver would wait for ever
        self.batch_size = max(1, min(config.asr.windows_per_call, rc.max_inflight_windows))
        self.generators: dict = {}  # ObjectRefGenerator -> _Prep
        self.inflight: dict = {}  # violations ref -> _Job
        self.waiting: deque[_Job] = deque()  # windows to send to ASR, retries first
        self.open: dict[int, int] = {}  # id(StreamState) -> windows in flight
        self.retries = 0  # windows and preparations tried again (a worker died, a call raised)
        self.completed = 0  # windows moderated in this run

    def run(self, sources: Iterable[str]) -> None:
        sources = list(sources)
        if self.config.ray.check_nodes:
            check_inputs_reachable(sources)
        todo = iter(sources)
        more = True
        while True:
            while more and self.free:
                source = next(todo, None)
                more = source is not None
                if more:
                    self._start(source)
            self._dispatch()
            if not self.generators and not self.inflight and not self.waiting:
                break
            waitables = list(self.inflight)
            if len(self.inflight) + len(self.waiting) < self.backlog:
                waitables += list(self.generators)
            ready, _ = ray.wait(waitables, num_returns=1, timeout=1.0)
            self.writer.poll()
            for ref in ready:
                if ref in self.generators:
                    self._pull(ref)
                else:
                    self._complete(ref)
            if self.metrics:
                self.metrics.queue.labels("windows_inflight").set(len(self.inflight))
                self.metrics.queue.labels("windows_waiting").set(len(self.waiting))

    def _start(self, source: str) -> None:
        state = self.track.begin(source)
        if self.track.skip_if_done(state):
            return
        self.open[id(state)] = 0
        self._generate(_Prep(state, self.free.pop()))

    def _generate(self, prep: _Prep) -> None:
        gen = (
            self.preparers[prep.preparer]
            .process.options(num_returns="streaming", _generator_backpressure_num_objects=self.backlog)
            .remote(prep.state.result.source, prep.received)
        )
        self.generators[gen] = prep

    def _pull(self, gen) -> None:
        prep = self.generators.pop(gen)
        state, k = prep.state, prep.received
        try:
            item = ray.get(next(gen))
        except StopIteration:
            item = None
        except Exception as exc:  # the preparer crashed or its node went away
            if prep.tries < self.config.ray.max_tries:
                log.warning(
                    "%s: preparing failed (try %d), retrying: %s",
                    state.result.source,
                    prep.tries,
                    one_line(exc),
                )
                prep.tries += 1
                self.retries += 1
                down = self._wait_ready([self.preparers[prep.preparer]])
                if not down:
                    self._generate(prep)  # from where it stopped
                    return
                exc = RuntimeError(down)
            self.track.prepare_failed(state, k, one_line(exc), prep.tries)
            item = None
        if item is None:
            self.free.append(prep.preparer)
            self._maybe_finish(state)
            return
        self.generators[gen] = prep
        prep.received = k + 1
        if isinstance(item, Failure):
            state.fail(item.reason)
        elif isinstance(item, Stream):
            self.track.stream(state, item)
        else:
            state.received(item)
            if not self.track.cached(state, k, item):
                self.waiting.append(_Job(state, k, item, None, -1))
                self.open[id(state)] += 1
                self._dispatch()

    def _dispatch(self) -> None:
        """Send waiting windows to ASR, in order.  A window on its second or later try runs
        alone: when a worker dies, every call it had queued fails with it, and only a try with
        nothing else in flight tells a poison window from the bystanders it took down.  With
        ``asr.batch_mode: batched``, first tries go out in batches of a stream's consecutive
        windows; ``parallel`` sends them one by one to actors that decode several at once."""
        while self.waiting:
            job = self.waiting[0]
            alone = job.tries > 1
            if not alone and self.batch_size > 1:
                group = self._batch()
                if group is None:
                    return  # wait for more windows of this stream
                if self.inflight and any(j.tries > 1 for j in self.inflight.values()):
                    return
                for _ in group:
                    self.waiting.popleft()
                self._submit_group(group)
                continue
            if self.inflight and (alone or any(j.tries > 1 for j in self.inflight.values())):
                return
            self.waiting.popleft()
            if alone:
                # the driver has nothing else in flight: wait here until the workers are back
                # (restarted after a crash, or on another node after a node was lost), so that
                # every counted try really ran
                down = self._wait_ready([self.asr.actors[self.asr.peek()], self.classifier])
                if down:
                    self.open[id(job.state)] -= 1
                    self.track.window_failed(job.state, job.k, job.window, down, job.tries - 1)
                    self._maybe_finish(job.state)
                    continue
                self._submit(job)
                return
            self._submit(job)

    def _wait_ready(self, actors: list) -> str:
        """Wait until ``actors`` answer; "" when they do, else why not (``ray.restart_timeout_s``)."""
        deadline = time.monotonic() + self.config.ray.restart_timeout_s
        delay = 0.5
        while True:
            try:
                ray.get(
                    [a.__ray_ready__.remote() for a in actors], timeout=max(1.0, deadline - time.monotonic())
                )
                return ""
            except (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError) as exc:
                if time.monotonic() >= deadline:
                    return f"worker not back within {self.config.ray.restart_timeout_s:g} s: {one_line(exc)}"
            time.sleep(delay)
            delay = min(2 * delay, 5.0)

    def _batch(self) -> list[_Job] | None:
        """The first-try windows of one stream at the head of the queue, up to ``batch_size``;
        None while fewer are waiting and the stream is still being prepared."""
        head = self.waiting[0].state
        group = []
        for job in self.waiting:
            if job.state is not head or job.tries > 1 or len(group) == self.batch_size:
                break
            group.append(job)
        preparing = any(p.state is head for p in self.generators.values())
        if len(group) < self.batch_size and preparing:
            return None
        return group

    def _submit_group(self, jobs: list[_Job]) -> None:
        if len(jobs) == 1:
            self._submit(jobs[0])
            return
        actor = self.asr.take(len(jobs))
        refs = (
            self.asr.actors[actor]
            .process_batch.options(num_returns=len(jobs))
            .remote([j.window for j in jobs])
        )
        for job, t_ref in zip(jobs, refs, strict=True):
            job.actor, job.t_ref = actor, t_ref
            v_ref = self.classifier.process.remote(t_ref, job.state.result.source)
            self.inflight[v_ref] = job

    def _submit(self, job: _Job) -> None:
        job.actor = self.asr.take()
        job.t_ref = self.asr.actors[job.actor].process.remote(job.window)
        v_ref = self.classifier.process.remote(job.t_ref, job.state.result.source)
        self.inflight[v_ref] = job

    def _complete(self, ref) -> None:
        job = self.inflight.pop(ref)
        self.asr.release(job.actor)
        try:
            transcripts = ray.get(job.t_ref)
            violations = ray.get(ref)
        except Exception as exc:  # a window that crashed ASR or the classifier, or lost its actor
            if job.tries < self.config.ray.max_tries:
                log.warning(
                    "window %d of %s failed (try %d), retrying: %s",
                    job.k,
                    job.window.stream_id,
                    job.tries,
                    one_line(exc),
                )
                job.tries += 1
                self.retries += 1
                self.waiting.appendleft(job)
                return
            self.track.window_failed(job.state, job.k, job.window, one_line(exc), job.tries)
        else:
            self.completed += 1
            self.track.window_done(job.state, job.k, job.window, transcripts, violations)
        self.open[id(job.state)] -= 1
        self._maybe_finish(job.state)

    def shutdown(self) -> None:
        """Let the actors go now (their CPUs are free for the next run in this Ray instance)."""
        for actor in [*self.preparers, *self.asr.actors, self.classifier]:
            ray.kill(actor, no_restart=True)

    def _maybe_finish(self, state: StreamState) -> None:
        if self.open.get(id(state)) == 0 and all(g.state is not state for g in self.generators.values()):
            del self.open[id(state)]
            self.track.finish(state)


def run_ray(
    sources: Iterable[str], config: Config, writer, progress: Progress, manifest=None, metrics=None
) -> None:
    batch = RayBatch(config, writer, progress, manifest, metrics)
    try:
        batch.run(sources)
    finally:
        batch.shutdown()
