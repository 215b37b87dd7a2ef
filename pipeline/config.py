"""Typed configuration loaded from ``configs/*.yaml`` and overridable from the command line.

Relative paths in a config file are resolved against the folder of that file, so a config
can be moved together with the lexicons and models it names.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG = PROJECT_ROOT / "configs" / "default.yaml"


class ConfigError(ValueError):
    """A bad configuration value; the message is one line naming the key."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class MediaConfig(_Section):
    ffmpeg: str = "auto"  # path to ffmpeg, or "auto": system ffmpeg, else imageio-ffmpeg's
    block_seconds: float = Field(30.0, gt=0)  # decoded audio is read in blocks this long


class VadConfig(_Section):
    threshold: float = Field(0.5, gt=0, lt=1)  # speech probability that opens an utterance
    min_silence_ms: int = Field(600, ge=0)  # silence that closes an utterance
    min_speech_ms: int = Field(250, ge=0)  # shorter bursts are dropped
    speech_pad_ms: int = Field(150, ge=0)  # padding kept on both sides of speech
    max_utterance_s: float = Field(30.0, gt=1, le=30)  # longer speech is cut here


class HallucinationConfig(_Section):
    no_speech_prob: float = Field(0.6, ge=0, le=1)  # with a low logprob: treated as no speech
    logprob_threshold: float = -1.0
    max_repeats: int = Field(4, ge=2)  # the same phrase this many times in a row is a loop
    phrases: list[str] = Field(
        default_factory=lambda: [
            "字幕由Amara.org社群提供",
            "字幕由Amara.org社区提供",
            "请不吝点赞订阅转发打赏支持明镜与点点栏目",
            "明镜与点点栏目",
            "感谢观看",
            "谢谢观看",
            "字幕志愿者",
            "字幕by",
            "中文字幕",
            "优优独播剧场",
            "YoYo Television Series Exclusive",
            "请订阅",
            "订阅我的频道",
        ]
    )


class AsrConfig(_Section):
    backend: Literal["faster-whisper", "openai-whisper"] = "faster-whisper"
    # "bundled" (Whisper base from the registry), a CTranslate2 folder, a .pt checkpoint
    # (openai-whisper), or a model name (downloaded when online, else taken from the cache)
    model: str = "bundled"
    device: Literal["auto", "cpu", "cuda"] = "auto"
    # faster-whisper: int8 | int8_float32 | float32 | float16 (GPU) | ... (CTranslate2's types);
    # openai-whisper: float32, or float16 on GPU (int8 types run as float32 on CPU, float16 on GPU)
    compute_type: Literal[
        "int8",
        "int8_float32",
        "int8_float16",
        "int8_bfloat16",
        "int16",
        "float32",
        "float16",
        "bfloat16",
        "auto",
        "default",
    ] = "int8"
    batch_size: int = Field(2, ge=1)  # windows decoded together in batch mode (1: one at a time)
    # parallel: side by side, one CTranslate2 replica each (shared weights, cpu_threads split
    # between them), the same transcripts as one at a time; batched: one batched pass
    # (faster-whisper's BatchedInferencePipeline, no temperature fallback)
    batch_mode: Literal["parallel", "batched"] = "parallel"
    cpu_threads: int = Field(0, ge=0)  # 0: one per core
    beam_size: int = Field(5, ge=1)
    temperatures: list[float] = Field(default_factory=lambda: [0.0, 0.2, 0.4])  # fallback ladder
    language: str = "zh"
    initial_prompt: str = "以下是普通话的直播带货内容，使用简体中文。"
    condition_on_previous_text: bool = True  # within a window (windows stay independent)
    window_s: float = Field(28.0, gt=1, le=30)  # utterances are packed into windows this long
    gap_s: float = Field(1.0, ge=0, le=2)  # silence inserted between packed utterances
    workers: int = Field(1, ge=1)  # ASR actors in the Ray pool
    # faster-whisper: the encoder sees 30 s (padded) as Whisper was trained; false: only the
    # window's audio plus 1 s, several times less work for short windows (live utterances)
    full_context: bool = True
    hallucination: HallucinationConfig = Field(default_factory=HallucinationConfig)

    @property
    def side_by_side(self) -> int:
        """Windows one ASR worker decodes at once: ``batch_size`` with ``batch_mode: parallel``
        on faster-whisper (one CTranslate2 replica each), else 1.  openai-whisper decodes one
        window at a time: its decoder hangs per-call key/value caches on the shared model."""
        return self.batch_size if self.batch_mode == "parallel" and self.backend == "faster-whisper" else 1

    @property
    def windows_per_call(self) -> int:
        """Windows handed to ASR in one call: ``batch_size`` with ``batch_mode: batched``, else 1."""
        return self.batch_size if self.batch_mode == "batched" else 1


class ClassifierConfig(_Section):
    lexicon_dir: Path = PROJECT_ROOT / "models" / "lexicon"
    user_lexicons: list[Path] = Field(default_factory=list)  # extra deny/allow YAML files
    variant_table: Path | None = PROJECT_ROOT / "models" / "normalize.yaml"  # evasion spellings
    min_score: float = Field(0.5, ge=0, le=1)  # labels below this score are not violations
    model_dir: Path | None = PROJECT_ROOT / "models" / "classifier"  # trained model; null: lexicon only
    # None: the values tuned at training time on dev + the set-aside test splits (training.json)
    model_threshold: float | None = Field(None, ge=0, le=1)  # the model alone flags from here
    model_veto: float | None = Field(None, ge=0, le=1)  # sound-alike matches the model puts below drop
    # a match of an entry of weight < 1 (a form often innocent), however exact, drops when the
    # model puts its subcategory below this: 象牙 in 德化象牙瓷 matches, the line is about porcelain
    model_dismiss: float | None = Field(None, ge=0, le=1)
    # a label resting on one lexicon match, of an entry of any weight, drops when the model puts
    # its subcategory below this: the line does not read as that violation at all (头孢 in
    # 医生给他开了头孢). Labels with more matches, the user's own entries, and lines with a phone
    # or ID number keep their matches
    model_reject: float | None = Field(None, ge=0, le=1)
    # a model-only flag also needs each of the model's readers that has a share (characters,
    # Whisper embeddings, n-grams) at or above this: one overconfident reader alone does not flag
    model_agreement: float | None = Field(None, ge=0, le=1)
    # where a context rule fired (negation, warning, ...), the model alone flags only when it and
    # every reader give at least this: a rule misled by a misheard word (Whisper's 也没门看我这身材
    # for 姐妹们看我这身材 reads as a negation); None: never
    model_overrule: float | None = Field(0.95, ge=0, le=1)
    # our ASR's transcripts (the batch and live pipelines' text; classify/eval rows with
    # "source": "asr") get the fusion thresholds tuned on transcripts (training.json fusion.asr);
    # false: the written-text ones for all.  The model_* values above override both
    transcript_fusion: bool = True
    model_threads: int | None = Field(None, ge=1)  # torch threads for the model (None: torch default)
    reload_interval_s: float | None = Field(2.0, ge=0)  # check lexicon files for edits; null: never
    negation_window: int = Field(6, ge=0)  # characters before a match searched for negation


class ClipConfig(_Section):
    enabled: bool = True
    context_s: float = Field(3.0, ge=0)  # media kept before and after a violation
    video: bool = True  # keep the video track when the source has one


class RayConfig(_Section):
    enabled: bool = True
    address: str | None = None  # None: start a local instance; "auto" or host:port to join
    num_cpus: int | None = None  # for a local instance
    prepare_workers: int = Field(1, ge=1)  # decode + VAD actors
    max_inflight_windows: int = Field(4, ge=1)  # back-pressure towards the ASR pool
    max_tries: int = Field(3, ge=1)  # tries of a window (or a stream's decoding) before it is recorded failed
    check_nodes: bool = True  # on a cluster, check first that every node can read the inputs
    restart_timeout_s: float = Field(300.0, gt=0)  # how long a retry waits for a dead worker to be back


class MetricsConfig(_Section):
    port: int | None = Field(
        None, ge=0, le=65535
    )  # serve Prometheus metrics here; null: off; 0: any free port
    host: str = "0.0.0.0"


class LiveStream(_Section):
    id: str  # stream id used in records
    url: str  # anything ffmpeg reads live, or a file played at real-time speed


class WebhookConfig(_Section):
    url: str | None = None  # POST each violation here (JSON, HMAC-signed)
    secret_env: str = "LIVEMOD_WEBHOOK_SECRET"  # environment variable holding the HMAC secret
    retries: int = Field(5, ge=0)
    timeout_s: float = Field(5.0, gt=0)


class LiveConfig(_Section):
    streams: list[LiveStream] = Field(default_factory=list)  # streams to watch besides the CLI's
    max_utterance_s: float = Field(15.0, gt=1, le=30)  # unbroken speech is cut here
    block_s: float = Field(0.25, gt=0, le=5)  # audio read from ffmpeg per step
    min_silence_ms: int = Field(600, ge=100)  # a pause this long ends an utterance (shorter: sooner alerts)
    max_inflight: int = Field(1, ge=1)  # windows of one stream in ASR at once; the rest wait and pack
    max_queued: int = Field(40, ge=1)  # utterances waiting beyond that; older ones are lost (recorded)
    stall_timeout_s: float = Field(5.0, gt=0)  # no data this long: reconnect
    reconnect_max_s: float = Field(10.0, gt=0)  # longest wait between reconnects
    give_up_after_s: float | None = None  # stop a stream after this long unreachable; null: never
    ring_keep_s: float = Field(120.0, gt=10)  # recent media kept for clips
    asr_workers: int = Field(2, ge=1)  # shared ASR actors (Ray): streams' utterances run side by side
    asr_threads: int = Field(1, ge=0)  # CPU threads per live ASR actor (0: one per core)
    asr_full_context: bool = False  # true: Whisper encodes 30 s per utterance as in batch (3× the CPU)
    stdout: bool = True  # print each violation as it is found
    webhook: WebhookConfig = Field(default_factory=WebhookConfig)


class OutputConfig(_Section):
    database: str = "moderation.db"  # file name inside --out, an absolute path, or a URL (postgresql://…)
    subtitles: bool = True
    report: bool = True


class Config(_Section):
    media: MediaConfig = Field(default_factory=MediaConfig)
    vad: VadConfig = Field(default_factory=VadConfig)
    asr: AsrConfig = Field(default_factory=AsrConfig)
    classifier: ClassifierConfig = Field(default_factory=ClassifierConfig)
    clips: ClipConfig = Field(default_factory=ClipConfig)
    ray: RayConfig = Field(default_factory=RayConfig)
    output: OutputConfig = Field(default_factory=OutputConfig)
    live: LiveConfig = Field(default_factory=LiveConfig)
    metrics: MetricsConfig = Field(default_factory=MetricsConfig)


def _error_line(exc: ValidationError, origin: str) -> str:
    err = exc.errors()[0]
    key = ".".join(str(p) for p in err["loc"]) or "(root)"
    value = err.get("input")
    shown = "" if isinstance(value, dict) else f" (got {value!r})"
    return f"{origin}: {key}: {err['msg']}{shown}"


def _resolve_paths(data: dict, base: Path) -> None:
    clf = data.get("classifier")
    if not isinstance(clf, dict):
        return
    for key in ("lexicon_dir", "variant_table", "model_dir"):
        if isinstance(clf.get(key), str):
            clf[key] = str((base / clf[key]).resolve())
    if isinstance(clf.get("user_lexicons"), list):
        clf["user_lexicons"] = [str((base / p).resolve()) for p in clf["user_lexicons"]]


def parse_override(text: str) -> tuple[list[str], Any]:
    """``asr.beam_size=3`` → (["asr", "beam_size"], 3); the value is parsed as YAML."""
    if "=" not in text:
        raise ConfigError(f"--set {text!r}: expected KEY=VALUE, e.g. asr.beam_size=3")
    key, raw = text.split("=", 1)
    return key.strip().split("."), yaml.safe_load(raw)


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """Load a YAML config (the default one when ``path`` is None) and apply ``key=value`` overrides."""
    path = Path(path) if path else DEFAULT_CONFIG
    data: dict = {}
    if path.exists():
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML: {str(exc).splitlines()[0]}") from exc
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: expected a mapping at the top level")
        _resolve_paths(data, path.parent)
    elif path != DEFAULT_CONFIG:
        raise ConfigError(f"{path}: config file not found")
    for item in overrides or []:
        keys, value = parse_override(item)
        node = data
        for k in keys[:-1]:
            node = node.setdefault(k, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {item}: {k} is not a section")
        node[keys[-1]] = value
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_error_line(exc, str(path))) from None
