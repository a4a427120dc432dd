"""The campaign spec (YAML), validated by pydantic. Unknown keys are errors that name the key."""

from __future__ import annotations

import itertools
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from agents.contract import MeasurementPolicy, RuntimeOptions

MAX_TRIALS = 10_000
PRECISIONS = ("fp32", "fp16", "int8", "int8_dynamic")
# A quantization method named apart from the precision it computes in: int8_dynamic
# (weights int8 ahead of time, activations quantized per query) runs where int8 runs.
COMPUTES_IN = {"int8_dynamic": "int8"}


class SpecError(ValueError):
    """An invalid campaign spec; the message names the field and the reason."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DeviceSelector(_Strict):
    names: list[str] | None = None
    tags: list[str] | None = None
    classes: list[str] | None = None

    @model_validator(mode="after")
    def _one_criterion(self) -> DeviceSelector:
        if not (self.names or self.tags or self.classes):
            raise ValueError("give at least one of names, tags or classes")
        return self


Shape = Annotated[list[Annotated[int, Field(ge=1, le=65536)]], Field(max_length=8)]


class ModelChoice(_Strict):
    """A model, and optionally the input shapes to sweep: {input: [shape, ...]}, each shape
    complete (its batch position is ignored: batch_sizes sets it). Several inputs sweep
    together as their product."""

    name: str = Field(min_length=1)
    input_size: int | None = Field(None, ge=1, le=8192)
    shapes: dict[str, Annotated[list[Shape], Field(min_length=1, max_length=16)]] | None = None

    def shape_sets(self) -> list[dict[str, list[int]] | None]:
        """Every combination of the swept shapes ([None]: the registered shapes)."""
        if not self.shapes:
            return [None]
        names = sorted(self.shapes)
        return [
            dict(zip(names, combination))
            for combination in itertools.product(*(self.shapes[n] for n in names))
        ]


class RuntimeChoice(_Strict):
    name: str = Field(min_length=1)
    device: str = "CPU"
    options: RuntimeOptions = RuntimeOptions()


# Each kind's parameters: (required, optional). `seed` (poisson) always has a value.
SCENARIO_PARAMETERS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "single_stream": ((), ()),
    "offline": ((), ()),
    "paced": (("gap_s",), ()),
    "poisson": (("rate",), ()),
    "soak": (("minutes",), ()),
    "multi_stream": (("interval_s",), ("samples_per_query",)),
    # MLPerf LoadGen drives these (edgebench[mlperf] on the device); rate: Server's QPS
    "mlperf_single_stream": ((), ()),
    "mlperf_multi_stream": ((), ("samples_per_query",)),
    "mlperf_offline": ((), ()),
    "mlperf_server": (("rate",), ()),
}


class Scenario(_Strict):
    """A load pattern; each kind takes its own parameters (and only those)."""

    kind: Literal[
        "single_stream",
        "offline",
        "paced",
        "poisson",
        "soak",
        "multi_stream",
        "mlperf_single_stream",
        "mlperf_multi_stream",
        "mlperf_offline",
        "mlperf_server",
    ] = "single_stream"
    gap_s: float | None = Field(None, gt=0, le=3600)
    rate: float | None = Field(None, gt=0, le=1_000_000)
    minutes: float | None = Field(None, gt=0, le=24 * 60)
    interval_s: float | None = Field(None, gt=0, le=3600)
    samples_per_query: int | None = Field(None, ge=1, le=1024)
    seed: int = Field(0, ge=0)

    @model_validator(mode="after")
    def _parameters_fit_the_kind(self) -> Scenario:
        required, optional = SCENARIO_PARAMETERS[self.kind]
        for parameter in required:
            if getattr(self, parameter) is None:
                raise ValueError(f"scenario {self.kind} needs {parameter}")
        for parameter in ("gap_s", "rate", "minutes", "interval_s", "samples_per_query"):
            if getattr(self, parameter) is not None and parameter not in required + optional:
                takers = [k for k, (r, o) in SCENARIO_PARAMETERS.items() if parameter in r + o]
                raise ValueError(
                    f"{parameter} applies to scenario {' or '.join(takers)}, not {self.kind}"
                )
        return self

    def params(self) -> dict[str, float]:
        values = {
            "gap_s": self.gap_s,
            "rate": self.rate,
            "minutes": self.minutes,
            "interval_s": self.interval_s,
            "samples_per_query": self.samples_per_query,
        }
        chosen = {k: v for k, v in values.items() if v is not None}
        if self.kind == "poisson":
            chosen["seed"] = self.seed
        return chosen

    def duration_s(self, policy_max_s: float) -> float:
        """The longest the measured part can take."""
        return self.minutes * 60.0 if self.kind == "soak" else policy_max_s


DEFAULT_RUNS = 5


class CampaignPolicy(MeasurementPolicy):
    """The measurement policy each run is sent with, plus `runs`: how many independent runs
    (fresh process, own warm-up) measure each configuration. A configuration's figures and
    verdicts are computed across its runs; a verdict needs at least 4 on each side."""

    runs: int | None = Field(None, ge=1, le=100)

    def measurement(self) -> MeasurementPolicy:
        """What an agent is sent (runs is the controller's business)."""
        return MeasurementPolicy(**self.model_dump(exclude={"runs"}))


class CampaignSpec(_Strict):
    name: str = Field(min_length=1, max_length=128)
    devices: DeviceSelector
    models: list[Annotated[Union[str, ModelChoice], Field(union_mode="left_to_right")]] = Field(
        min_length=1
    )
    runtimes: list[Union[str, RuntimeChoice]] = Field(default=["onnxruntime"], min_length=1)
    precisions: list[Literal["fp32", "fp16", "int8", "int8_dynamic"]] = Field(
        default=["fp32"], min_length=1
    )
    batch_sizes: list[Annotated[int, Field(ge=1, le=4096)]] = Field(default=[1], min_length=1)
    scenario: Scenario = Scenario()
    policy: CampaignPolicy = CampaignPolicy()
    # The older name of policy.runs, still read (giving both, differently, is an error).
    repeats: int | None = Field(None, ge=1, le=100)

    @model_validator(mode="after")
    def _one_run_count(self) -> CampaignSpec:
        given = self.policy.runs
        if given is not None and self.repeats is not None and given != self.repeats:
            raise ValueError(
                f"repeats ({self.repeats}) and policy.runs ({given}) disagree: "
                "give policy.runs only (repeats is its older name)"
            )
        return self

    @property
    def runs(self) -> int:
        """Runs per configuration: policy.runs, else repeats, else DEFAULT_RUNS."""
        return self.policy.runs or self.repeats or DEFAULT_RUNS

    @model_validator(mode="after")
    def _no_duplicates(self) -> CampaignSpec:
        # Repeating a measurement is what `policy.runs` is for; a duplicate entry is a typo.
        for field, values in (
            ("models", [m.model_dump_json() for m in self.model_choices()]),
            ("runtimes", [r.model_dump_json() for r in self.runtime_choices()]),
            ("precisions", self.precisions),
            ("batch_sizes", self.batch_sizes),
            ("devices.names", self.devices.names or []),
        ):
            seen = set()
            for index, value in enumerate(values):
                if value in seen:
                    raise ValueError(
                        f"{field}.{index} repeats an earlier entry; use `policy.runs` to measure "
                        "more runs"
                    )
                seen.add(value)
        return self

    def model_choices(self) -> list[ModelChoice]:
        return [m if isinstance(m, ModelChoice) else ModelChoice(name=m) for m in self.models]

    def runtime_choices(self) -> list[RuntimeChoice]:
        return [r if isinstance(r, RuntimeChoice) else RuntimeChoice(name=r) for r in self.runtimes]


def _describe(error: dict[str, Any]) -> str:
    loc = list(error["loc"])
    # The unknown key itself is the user's text: keep it whatever it looks like.
    key = loc.pop() if error["type"] == "extra_forbidden" and loc else None
    # Drop pydantic's union-branch labels ("str", "ModelChoice") from the location.
    parts = [str(p) for p in loc if not (isinstance(p, str) and p[:1].isupper())]
    parts = [p for p in parts if p not in ("str", "int", "float")]
    message = error["msg"].removeprefix("Value error, ")
    if key is not None:
        parts.append(str(key))
        message = f"unknown key {str(key)!r}"
    return f"{'.'.join(parts) or 'spec'}: {message}"


def parse_spec(data: Any) -> CampaignSpec:
    """Validate a spec given as a dict; raise SpecError naming every bad field."""
    if not isinstance(data, dict):
        raise SpecError("spec: a campaign spec must be a YAML mapping")
    try:
        return CampaignSpec.model_validate(data)
    except ValidationError as exc:
        seen: list[str] = []
        for error in exc.errors():
            line = _describe(error)
            if line not in seen:
                seen.append(line)
        raise SpecError("\n".join(seen)) from None


def load_spec(text: str) -> CampaignSpec:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise SpecError(f"spec: not valid YAML: {exc}") from None
    except RecursionError:  # the YAML parser recurses once per level of nesting
        raise SpecError("spec: not valid YAML: nested too deeply") from None
    return parse_spec(data)
