"""Live moderation on Ray: an ingest actor per stream, shared ASR and classifier pools, one sink.

ASR and classifier actors restart when they die and their in-flight calls are retried
(``max_restarts``, ``max_task_retries``); an utterance that still fails is recorded as lost by
the stream's worker.  Ingest actors are light (ffmpeg + VAD) and may sit on any node; the sink
actor is the single writer of the JSONL files and the database.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import Future
from pathlib import Path

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from pipeline.config import Config, LiveStream
from pipeline.live.sink import LiveSink
from pipeline.live.worker import StreamWorker, live_asr_config
from pipeline.runners.live_local import StopSignals
from pipeline.runners.ray_batch import AsrActor, ClassifyActor, init_ray
from pipeline.segment import Window, pack_windows

log = logging.getLogger(__name__)


@ray.remote(num_cpus=0, max_concurrency=4)
class SinkActor:
    def __init__(self, out: str, config: Config) -> None:
        self.sink = LiveSink(out, config)

    def call(self, method: str, *args, **kwargs):
        return getattr(self.sink, method)(*args, **kwargs)


class _RemoteSink:
    """The LiveSink interface a StreamWorker expects, forwarded to the sink actor."""

    def __init__(self, actor) -> None:
        self.actor = actor

    def results(self, *args):
        return ray.get(self.actor.call.remote("results", *args))

    def __getattr__(self, method: str):
        return lambda *args, **kwargs: self.actor.call.remote(method, *args, **kwargs)


@ray.remote(num_cpus=0, max_concurrency=256)
class AsrDispatcher:
    """Packs the utterances of all streams that wait for ASR into shared Whisper windows.

    Whisper encodes 30 s whatever it is given, so one pass over four streams' utterances costs
    little more than a pass over one.  Each ``transcribe`` call (one per stream window) waits
    here until the pass holding its utterances is done, and gets back its own transcripts.
    """

    def __init__(self, asr_actors: list, window_s: float, gap_s: float) -> None:
        self.actors, self.window_s, self.gap_s = list(asr_actors), window_s, gap_s
        self.free = list(range(len(self.actors)))
        self.waiting: list[dict] = []
        self.lock = threading.Lock()

    def transcribe(self, window: Window):
        job = {"items": window.items(), "done": threading.Event(), "result": None, "error": None}
        with self.lock:
            self.waiting.append(job)
        self._kick()
        job["done"].wait()
        if job["error"] is not None:
            raise job["error"]
        return job["result"]

    def _kick(self) -> None:
        """Oldest first; a free actor takes its share of the waiting calls (one each while
        there are as many free actors as calls: side by side beats one after the other)."""
        with self.lock:
            while self.free and self.waiting:
                share = -(-len(self.waiting) // len(self.free))
                jobs = [self.waiting.pop(0)]
                size = sum(u.duration for u, _ in jobs[0]["items"])
                while self.waiting and len(jobs) < share:
                    extra = sum(u.duration + self.gap_s for u, _ in self.waiting[0]["items"])
                    if size + extra > self.window_s:
                        break
                    jobs.append(self.waiting.pop(0))
                    size += extra
                actor = self.free.pop(0)
                threading.Thread(target=self._run, args=(actor, jobs), daemon=True).start()

    def _run(self, actor: int, jobs: list[dict]) -> None:
        pairs = [item for job in jobs for item in job["items"]]
        try:
            packed = next(pack_windows(pairs, self.window_s, self.gap_s))
            by_id = {t.utterance.utterance_id: t for t in ray.get(self.actors[actor].process.remote(packed))}
            for job in jobs:
                job["result"] = [by_id[u.utterance_id] for u, _ in job["items"]]
        except Exception as exc:  # the pool retried already: fail these utterances, not the stream
            for job in jobs:
                job["error"] = exc
        finally:
            for job in jobs:
                job["done"].set()
            with self.lock:
                self.free.append(actor)
            self._kick()


class RayModerator:
    """Window → Future[(transcripts, violations)] through the dispatcher and the classifier."""

    def __init__(self, dispatcher, classifier) -> None:
        self.dispatcher = dispatcher
        self.classifier = classifier

    def __call__(self, window: Window, source: str) -> Future:
        t_ref = self.dispatcher.transcribe.remote(window)
        v_ref = self.classifier.process.remote(t_ref, source)
        done: Future = Future()

        def settle(_):
            try:
                done.set_result((ray.get(t_ref), ray.get(v_ref)))
            except Exception as exc:
                done.set_exception(exc)

        v_ref.future().add_done_callback(settle)
        return done


@ray.remote(num_cpus=0, max_concurrency=2)  # light: ffmpeg decode and VAD
class IngestActor:
    def __init__(self, stream: LiveStream, config: Config, out: str, asr_actors, classifier, sink) -> None:
        self.worker = StreamWorker(
            stream.id, stream.url, config, RayModerator(asr_actors, classifier), _RemoteSink(sink), Path(out)
        )

    def run(self, duration: float | None):
        return vars(self.worker.run(duration))

    def stop(self) -> None:
        self.worker.stop()


def run_live_ray(streams: list[LiveStream], config: Config, out: Path, duration: float | None) -> dict:
    init_ray(config)
    restartable = {"max_restarts": -1, "max_task_retries": 2}  # a dead actor comes back, its calls rerun
    asr_config = config.model_copy(update={"asr": live_asr_config(config)})
    asr = [AsrActor.options(**restartable).remote(asr_config) for _ in range(config.live.asr_workers)]
    classifier = ClassifyActor.options(**restartable).remote(config)
    dispatcher = AsrDispatcher.remote(asr, config.asr.window_s, config.asr.gap_s)
    # the single writer stays on this node: --out and the metrics port are where the user looks
    here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
    sink = SinkActor.options(scheduling_strategy=here).remote(str(out), config)
    ingest = [IngestActor.remote(s, config, str(out), dispatcher, classifier, sink) for s in streams]
    ray.get([a.__ray_ready__.remote() for a in [*asr, classifier]])  # models loaded before media flows
    runs = [a.run.remote(duration) for a in ingest]

    def stop_all() -> None:
        for a in ingest:
            a.stop.remote()

    with StopSignals(stop_all):
        pending = list(runs)
        while pending:
            _, pending = ray.wait(pending, num_returns=len(pending), timeout=0.5)
    per_stream = dict(zip([s.id for s in streams], ray.get(runs), strict=True))
    summary = ray.get(sink.call.remote("summary"))
    ray.get(sink.call.remote("close"))
    summary["per_stream"] = per_stream
    return summary
