"""Versioned, JSON-safe messages exchanged by the orchestrator and the agents.

Every message is an envelope ``{"schema": N, "kind": K, "body": {...}}``; an agent's
messages also carry a ``signature`` (see agents.contract.signing). A message
with another schema version, an unknown kind or a malformed body is rejected with a
``ContractError`` that names the problem; callers log it and drop the message.
This module is shared by both sides, so it stays stdlib + pydantic and Python 3.8 safe
(JetPack 4.6 on a Jetson Nano).
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any, Dict, Iterable, List, Literal, Optional, Tuple, Type

if sys.version_info >= (3, 9):
    from typing import Annotated
else:  # Python 3.8 (JetPack 4.6): typing gained Annotated in 3.9
    from typing_extensions import Annotated

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    create_model,
    field_validator,
    model_validator,
)

from agents.contract import metrics
from agents.contract.metrics import Metric
from agents.contract.profile import OperatorProfile

# 4: agent messages carry a signature (agents.contract.signing); registrations may name
# the enrollment token their device key came from.
# 5: trial specs name each input's batch axis and carry the model's sample input values;
# latency summaries carry a robust spread (IQR, MAD, robust CV).
# 6: results carry compile_ms (a metric added to agents.contract.metrics changes the result
# message: a controller of the version before refuses it by name, not as an unknown field).
SCHEMA_VERSION = 7

CONTROL_QUEUE = "edgebench.control"
INGEST_TASK = "edgebench.ingest"
RUN_TRIAL_TASK = "edgebench.run_trial"

MAX_MESSAGE_BYTES = 8 * 1024 * 1024
DEVICE_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"


# Trial ids are made by the controller (uuid4 hex); agents use them in file names.
TrialId = Annotated[str, Field(pattern=r"^[0-9a-f]{32}$")]
ShortText = Annotated[str, Field(max_length=256)]
Tag = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,31}$")]
MAX_SAMPLES = 500_000  # 500k samples of ~10 ms serialise to ~5 MB, under MAX_MESSAGE_BYTES


class ContractError(ValueError):
    """A message that does not follow this contract."""


def agent_queue(device_name: str) -> str:
    """The Celery queue a device's agent consumes."""
    return f"agent.{device_name}"


def validate_device_name(name: str) -> str:
    if not re.fullmatch(DEVICE_NAME_PATTERN, name or ""):
        raise ValueError(
            f"invalid device name {name!r}: use 1-64 letters, digits, '.', '_' or '-',"
            " starting with a letter or digit"
        )
    return name


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RuntimeOptions(_Message):
    """How a runtime is set up for a trial; what a runtime does not use, it ignores and the
    trial's placement says what was applied.

    ``cache``: load the model twice, into an empty runtime cache (OpenVINO model cache,
    TensorRT engine cache) and then from it, so cold start is reported without and with it.
    """

    threads: Optional[int] = Field(None, ge=1, le=1024)
    inter_op_threads: Optional[int] = Field(None, ge=1, le=1024)
    graph_optimization: Optional[Literal["disable", "basic", "extended", "all"]] = None
    performance_hint: Optional[Literal["latency", "throughput"]] = None
    num_streams: Optional[int] = Field(None, ge=1, le=256)
    trt_fp16: Optional[bool] = None
    cache: bool = False

    @classmethod
    def taken_by(cls, runtime: str, *names: str) -> Type[_Message]:
        """The options one runtime applies, as a model of those fields only (each adapter
        declares its own: agents.runtimes.seam.RuntimeAdapter.options). `cache` is every
        runtime's: the runner applies it (a runtime without a model cache loads once)."""
        fields: Dict[str, Any] = {
            name: (cls.model_fields[name].annotation, cls.model_fields[name])
            for name in ("cache", *names)
        }
        return create_model(
            f"{runtime.title()}Options", __base__=_Message, __module__=__name__, **fields
        )


def options_refusal(runtime: str, given: Iterable[str], takes: Iterable[str]) -> Optional[str]:
    """Why `runtime` refuses the given options it does not apply (those `takes` leaves out),
    or None: said by the plan, from the agent's registration, and by the runner."""
    takes = sorted(takes)
    refused = sorted(set(given) - set(takes))
    if not refused:
        return None
    return f"{runtime} does not take runtime option {', '.join(refused)} (it takes: {', '.join(takes)})"


class MeasurementPolicy(_Message):
    """When to stop measuring: both min_queries and min_s reached, or max_s elapsed, or
    max_queries samples taken (which bounds the size of a result for very fast models)."""

    warmup_s: float = Field(1.0, ge=0, le=600)
    min_queries: int = Field(200, ge=1, le=MAX_SAMPLES)
    min_s: float = Field(3.0, ge=0, le=3600)
    max_s: float = Field(30.0, gt=0, le=24 * 3600)
    max_queries: int = Field(100_000, ge=1, le=MAX_SAMPLES)
    # A run whose robust CV (1.4826 x MAD / median: the CV for normal data, unmoved by a
    # few hiccups) exceeds this is flagged unstable.
    max_cv: float = Field(0.3, gt=0, le=100)
    # Seconds of idle power measured before the trial, subtracted from its energy (needs a meter).
    idle_baseline_s: float = Field(1.0, ge=0, le=600)
    # Thermal protocol: wait (up to cool_timeout_s) until the hottest zone is below this.
    cool_below_c: Optional[float] = Field(None, gt=0, le=150)
    cool_timeout_s: float = Field(120.0, ge=0, le=3600)
    # When a run comes back unstable or throttled, the controller adds one more run of its
    # configuration, up to this many per configuration. Every run is kept and counted.
    max_reruns: int = Field(0, ge=0, le=5)
    # After the timed runs: a pass under the runtime's own operator profiler (where each
    # operator ran, how long it took: agents.contract.profile), carried with the result.
    profile: bool = False

    @field_validator("max_s")
    @classmethod
    def _max_not_below_min(cls, value: float, info: Any) -> float:
        min_s = info.data.get("min_s")
        if min_s is not None and value < min_s:
            raise ValueError(f"max_s ({value}) must be at least min_s ({min_s})")
        return value

    @field_validator("max_queries")
    @classmethod
    def _max_queries_not_below_min(cls, value: int, info: Any) -> int:
        min_queries = info.data.get("min_queries")
        if min_queries is not None and value < min_queries:
            raise ValueError(f"max_queries ({value}) must be at least min_queries ({min_queries})")
        return value


class ArtifactRef(_Message):
    """A model file, addressed by content. ``uri`` is where the agent can read it."""

    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    size: int = Field(ge=0)
    format: str
    uri: str


class InputSpec(_Message):
    """One model input as registered: every dimension known but a dynamic batch (None).

    ``batch_axis`` is the axis the trial's batch size goes on; None for an input without
    one (a scalar, a sample rate), fed as registered. Stored inputs from before batch axes
    were recorded read as axis 0 when their first dimension is dynamic.
    """

    name: str
    shape: List[Optional[int]]  # None marks the batch (or another dynamic) dimension
    dtype: str
    batch_axis: Optional[int] = Field(None, ge=0, le=31)

    @model_validator(mode="before")
    @classmethod
    def _older_inputs_batch_first(cls, data: Any) -> Any:
        if isinstance(data, dict) and "batch_axis" not in data:
            shape = data.get("shape")
            if isinstance(shape, list) and shape and shape[0] is None:
                return {**data, "batch_axis": 0}
        return data

    @classmethod
    def of(cls, stored: Dict[str, Any]) -> InputSpec:
        """An input as the controller stores it, keys this contract does not carry (the
        axes a shape sweep may change) left out."""
        return cls(**{k: v for k, v in stored.items() if k in cls.model_fields})

    @model_validator(mode="after")
    def _batch_axis_inside_the_shape(self) -> InputSpec:
        if self.batch_axis is not None and self.batch_axis >= len(self.shape):
            raise ValueError(
                f"batch_axis {self.batch_axis} is outside the {len(self.shape)}-d input"
            )
        return self


class TrialSpec(_Message):
    """What the orchestrator asks an agent to measure. ``boot_id`` names the agent process
    it was sent to: a restarted agent drops specs meant for its previous life."""

    trial_id: TrialId
    attempt: int = Field(ge=1)
    boot_id: str
    campaign_id: int
    device: str
    model: str
    artifact: ArtifactRef
    # fp32 reference inputs/outputs (and labels) for fidelity and accuracy: an .npz file.
    reference: Optional[ArtifactRef] = None
    # The values registered with the model (an .npz, one array per input): what trials feed.
    sample_input: Optional[ArtifactRef] = None
    inputs: List[InputSpec]
    runtime: str
    requested_device: str = "CPU"
    runtime_options: RuntimeOptions = RuntimeOptions()
    precision: str = "fp32"
    batch_size: int = Field(ge=1, le=4096)
    scenario: str = "single_stream"
    scenario_params: Dict[str, float] = {}
    policy: MeasurementPolicy = MeasurementPolicy()
    timeout_s: float = Field(gt=0)


class RuntimeFacts(BaseModel):
    model_config = ConfigDict(extra="allow")

    name: Annotated[str, Field(max_length=32)]
    version: Optional[ShortText] = None
    devices: List[Annotated[str, Field(max_length=64)]] = []
    # device -> precisions it runs (fp32, fp16, int8, bf16); absent from older agents.
    precisions: Dict[Annotated[str, Field(max_length=64)], List[ShortText]] = {}
    # device -> model formats it loads, preferred first; absent from older agents.
    formats: Dict[Annotated[str, Field(max_length=64)], List[ShortText]] = {}
    # The runtime options (RuntimeOptions fields) it applies; None from older agents.
    options: Optional[List[Annotated[str, Field(max_length=64)]]] = None


class HostFacts(BaseModel):
    """What an agent detected. Known keys are typed; probes may add more."""

    model_config = ConfigDict(extra="allow")

    device_class: Annotated[str, Field(max_length=64)] = "unknown"
    cpu_model: Optional[ShortText] = None
    arch: Optional[ShortText] = None
    logical_cores: Optional[int] = None
    memory_mb: Optional[int] = None
    os: Optional[ShortText] = None
    kernel: Optional[ShortText] = None
    board: Optional[ShortText] = None
    python: Optional[ShortText] = None
    runtimes: List[RuntimeFacts] = []


class Registration(_Message):
    device: str
    boot_id: str
    agent_version: str
    tags: List[Tag] = Field(default=[], max_length=32)
    facts: HostFacts = HostFacts()
    sent_at: float
    # The public id of the enrollment token the signing key was derived from (signing.py).
    enrollment_token: Optional[str] = Field(None, pattern=r"^[0-9a-f]{16}$")

    @field_validator("device")
    @classmethod
    def _valid_name(cls, value: str) -> str:
        return validate_device_name(value)


class Heartbeat(_Message):
    device: str
    boot_id: str
    sent_at: float
    current_trial: Optional[TrialId] = None
    current_attempt: Optional[int] = None


class TrialStarted(_Message):
    trial_id: TrialId
    attempt: int
    device: str
    boot_id: str
    sent_at: float


def _figures(name: str, declared: Tuple[Metric, ...]) -> Type[_Message]:
    """A message of the declared figures (agents.contract.metrics): each of its kind,
    required where declared so, else null when unmeasured."""
    fields: Dict[str, Any] = {
        m.name: (m.kind, ...) if m.required else (Optional[m.kind], None) for m in declared
    }
    return create_model(name, __base__=_Message, __module__=__name__, **fields)


# The timed queries' latency summary (statistics.summarize_ns).
LatencySummary = _figures("LatencySummary", metrics.SUMMARY)
_ResultFigures = _figures("_ResultFigures", metrics.OUTSIDE_SUMMARY)


class TrialResult(_ResultFigures):
    """What an agent measured, or why it could not. Unmeasured fields are null. Its
    figures (summary and the rest) are declared in agents.contract.metrics."""

    trial_id: TrialId
    attempt: int
    device: str
    boot_id: str
    status: Literal["ok", "failed"]
    error: Optional[str] = None
    placement: Dict[str, Any] = {}
    summary: Optional[LatencySummary] = None  # type: ignore[valid-type]
    scenario_report: Dict[str, Any] = {}
    samples_ns: List[int] = Field(default=[], max_length=MAX_SAMPLES)
    environment: Dict[str, Any] = {}
    profile: Optional[OperatorProfile] = None
    sent_at: float


MESSAGE_KINDS = {
    "registration": Registration,
    "heartbeat": Heartbeat,
    "trial_started": TrialStarted,
    "trial_result": TrialResult,
    "trial_spec": TrialSpec,
}
_KIND_OF = {cls: kind for kind, cls in MESSAGE_KINDS.items()}


def envelope(message: _Message) -> Dict[str, Any]:
    """Wrap a message for the wire (a plain JSON-safe dict)."""
    return {
        "schema": SCHEMA_VERSION,
        "kind": _KIND_OF[type(message)],
        "body": message.model_dump(mode="json"),
    }


def parse(raw: Any) -> _Message:
    """Validate an envelope and return its message, or raise ContractError naming the problem."""
    if isinstance(raw, (bytes, str)):
        try:  # a str with a lone surrogate is not UTF-8 text
            size = len(raw.encode("utf-8")) if isinstance(raw, str) else len(raw)
        except UnicodeEncodeError:
            raise ContractError("message is not valid UTF-8 text") from None
        if size > MAX_MESSAGE_BYTES:
            raise ContractError(f"message of {size} bytes exceeds {MAX_MESSAGE_BYTES}")
        try:
            raw = json.loads(raw)
        except ValueError as exc:
            raise ContractError(f"message is not JSON: {exc}") from None
        except RecursionError:
            raise ContractError("message is not JSON: nested too deeply") from None
    if not isinstance(raw, dict):
        raise ContractError(f"message must be a JSON object, got {type(raw).__name__}")
    try:
        size = len(json.dumps(raw))
        # A "\\ud800" escape decodes to a lone surrogate, which neither the signature
        # (UTF-8 canonical JSON) nor the store can encode: refuse it here.
        json.dumps(raw, ensure_ascii=False).encode("utf-8")
    except (TypeError, ValueError) as exc:
        raise ContractError(f"message is not JSON-safe: {exc}") from None
    except RecursionError:
        raise ContractError("message is not JSON-safe: nested too deeply") from None
    if size > MAX_MESSAGE_BYTES:
        raise ContractError(f"message of {size} bytes exceeds {MAX_MESSAGE_BYTES}")
    schema = raw.get("schema")
    if schema != SCHEMA_VERSION:
        raise ContractError(
            f"unsupported schema version {schema!r} (this side speaks {SCHEMA_VERSION})"
        )
    kind = raw.get("kind")
    cls = MESSAGE_KINDS.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise ContractError(f"unknown message kind {kind!r}")
    try:
        return cls.model_validate(raw.get("body"))
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "body"
        raise ContractError(f"invalid {kind} message: {where}: {first['msg']}") from None


def broker_ssl_options(url: str, ca_certs: Optional[Path] = None) -> Optional[Dict[str, Any]]:
    """TLS settings for a rediss:// broker: verify the server (see broker_rules.ssl_options)."""
    from agents.contract.broker_rules import ssl_options

    return ssl_options(url, ca_certs)


# The controller's enrollment token for agents on its own machine (0600, in EDGEBENCH_HOME).
LOCAL_ENROLLMENT_TOKEN_FILE = "enrollment_token"

# The embedded broker's discovery file: written by `edgebench server`/`quickstart`,
# read by every command on the same machine so that none needs a broker flag.
EMBEDDED_BROKER_FILE = "broker.json"


def read_embedded_broker_url(home: Path) -> Optional[str]:
    path = Path(home) / EMBEDDED_BROKER_FILE
    try:
        return json.loads(path.read_text())["url"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
