"""Live moderation on Ray: an ingest actor per stream, shared ASR and classifier pools, one sink.

ASR and classifier actors restart when they die and their in-flight calls are retried
(``max_restarts``, ``max_task_retries``); an utterance that still fails is recorded as lost by
the stream's worker.  Ingest actors are light (ffmpeg + VAD) and may sit on any node; the sink
actor is the single writer of the JSONL files and the database.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from concurrent.futures import Future
from pathlib import Path

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from pipeline.config import Config, LiveStream
from pipeline.live.sink import LiveSink
from pipeline.live.worker import StreamWorker, live_asr_config
from pipeline.runners.live_local import StopSignals
from pipeline.runners.ray_batch import AsrActor, ClassifyActor, init_ray
from pipeline.segment import Window

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
    """Hands each stream's window to the next free ASR actor, oldest first.

    A window holds one stream's utterances only: utterances of different streams packed into
    one Whisper input change what is heard (Whisper skips or cuts short a sentence that follows
    a similar one), and with the encoder given only the audio (``live.asr_full_context``
    false) packing saves little.  A stream that falls behind still packs its own queued
    utterances (``StreamWorker``).  Each ``transcribe`` call waits here until its window is
    done; no actor is handed a second window while another actor is idle.
    """

    def __init__(self, asr_actors: list) -> None:
        self.actors = list(asr_actors)
        self.free = list(range(len(self.actors)))
        self.waiting: deque[tuple[Window, Future]] = deque()
        self.lock = threading.Lock()

    def transcribe(self, window: Window):
        job: Future = Future()
        with self.lock:
            self.waiting.append((window, job))
        self._kick()
        return job.result()  # raises what the ASR actor raised, after the pool's retries

    def _kick(self) -> None:
        with self.lock:
            while self.free and self.waiting:
                actor, (window, job) = self.free.pop(0), self.waiting.popleft()
                threading.Thread(target=self._run, args=(actor, window, job), daemon=True).start()

    def _run(self, actor: int, window: Window, job: Future) -> None:
        try:
            job.set_result(ray.get(self.actors[actor].process.remote(window)))
        except Exception as exc:  # the pool retried already: fail these utterances, not the stream
            job.set_exception(exc)
        finally:
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
    dispatcher = AsrDispatcher.remote(asr)
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
