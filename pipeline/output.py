"""Everything a batch run leaves in ``--out``: one place that turns StreamResults into files.

    violations.jsonl              all violations, one JSON object per line
    failed.jsonl                  segments given up on after ray.max_tries (stream, times, reason)
    transcripts/<stream>.jsonl    utterances with words, scores and hallucination flags
    transcripts/<stream>.srt/.vtt subtitles of the kept utterances
    clips/<stream>/...            media around each violation (±context)
    moderation.db                 SQLite: streams, inputs, utterances, violations, failed
    manifest.db                   what is finished, to resume a killed run (pipeline/manifest.py)
    report.html                   offline summary and timeline

Clips are cut on a small thread pool so the pipeline keeps transcribing meanwhile; a stream's
records are written once its clips exist, so every record points at a real file.
"""

from __future__ import annotations

import logging
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from pipeline.clips import make_clips
from pipeline.config import Config
from pipeline.media import find_ffmpeg
from pipeline.records import StreamResult
from pipeline.report import write_report
from pipeline.sinks import TRANSCRIPT_WRITERS, Database, StreamJsonl, database_target

log = logging.getLogger(__name__)


class OutputWriter:
    def __init__(self, out_dir: str | Path, config: Config, classifier_version: str = "") -> None:
        self.out = Path(out_dir)
        self.out.mkdir(parents=True, exist_ok=True)
        self.config = config
        self.classifier_version = classifier_version
        self.db = Database(database_target(self.out, config.output.database))
        self.violations = StreamJsonl(self.out / "violations.jsonl")
        self.failed = StreamJsonl(self.out / "failed.jsonl")
        self.ffmpeg = find_ffmpeg(config.media.ffmpeg)
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="clips")
        self._pending: list[Future] = []
        self.results: list[StreamResult] = []
        self.warnings: list[str] = []

    def submit(self, result: StreamResult) -> None:
        """Queue a finished (or failed) stream for writing."""
        if result.stream is None:
            self.db.record_input(result.source, "", "failed", result.error)
            self.results.append(result)
            return
        self._pending.append(self._pool.submit(self._with_clips, result))
        self.poll()

    def _with_clips(self, result: StreamResult) -> StreamResult:
        out, errors = make_clips(result.stream, result.violations, self.out, self.config.clips, self.ffmpeg)
        result.violations = out
        self.warnings += errors
        return result

    def poll(self, wait: bool = False) -> None:
        """Persist the streams whose clips are done (all of them when ``wait``)."""
        still = []
        for fut in self._pending:
            if wait or fut.done():
                self._persist(fut.result())
            else:
                still.append(fut)
        self._pending = still

    def _persist(self, result: StreamResult) -> None:
        s = result.stream
        asr_model = next((t.asr_model for t in result.transcripts if t.asr_model), "")
        if self.config.output.subtitles:
            for writer in TRANSCRIPT_WRITERS:
                writer.write(result.transcripts, self.out / "transcripts", s.stream_id)
        self.violations.replace_stream(s.stream_id, (v.to_dict() for v in result.violations))
        self.db.write_stream(result, asr_model, self.classifier_version)
        if result.failures or self.failed.path.exists():
            self.failed.replace_stream(s.stream_id, (f.to_dict() for f in result.failures))
        self.db.write_failures(s.stream_id, result.failures)
        status, error = ("failed", result.error) if result.error else ("done", "")
        if result.failures and not result.error:
            status = "partial"
            error = f"{len(result.failures)} segment(s) failed, see failed.jsonl: {result.failures[0].reason}"
        self.db.record_input(result.source, s.stream_id, status, error)
        self.results.append(result)

    def close(self) -> Path | None:
        """Wait for clips, write the report; returns the report path."""
        self.poll(wait=True)
        self._pool.shutdown()
        report = None
        if self.config.output.report:
            shared = self.db.path is None  # a database server: report only this run's streams
            mine = [r.stream.stream_id for r in self.results if r.stream] if shared else None
            report = write_report(self.db, self.out / "report.html", mine)
        self.db.close()
        return report
