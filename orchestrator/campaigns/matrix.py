"""Expand a campaign spec into trials for the devices and models the store knows.

Plan in, plan out: the caller passes plain descriptions of devices and model
artifacts and gets planned trials plus the combinations that cannot run, each with
a reason a user can act on.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

from agents.contract import options_refusal
from orchestrator.campaigns.spec import (
    COMPUTES_IN,
    MAX_TRIALS,
    CampaignSpec,
    ModelChoice,
    RuntimeChoice,
)

# Which formats a runtime loads comes from each agent (RuntimeFacts.formats, from its
# adapters). Agents registered before they reported it are planned with what the three
# runtimes of that time loaded; a runtime added since reports its own.
FORMATS_BEFORE_AGENTS_SAID = {
    ("onnxruntime", None): ("onnx",),
    ("openvino", None): ("openvino-ir", "onnx"),
    ("litert", None): ("tflite",),
    ("litert", "EdgeTPU"): ("tflite-edgetpu",),
}
# Seconds allowed on top of the measurement policy for process start, load and first run.
TRIAL_OVERHEAD_S = 120.0


@dataclass(frozen=True)
class DeviceInfo:
    name: str
    device_class: str
    tags: tuple[str, ...]
    runtimes: dict[str, list[str]]  # runtime name -> devices/providers it offers
    # runtime -> device -> precisions it runs; empty when the agent did not say
    precisions: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    # runtime -> device -> model formats it loads, preferred first; empty when not said
    formats: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    # runtime -> the runtime options it applies; absent when its agent did not say
    options: dict[str, list[str]] = field(default_factory=dict)
    online: bool = True
    # MLPerf LoadGen on the device (the mlperf_* scenarios); None: its agent did not say
    has_loadgen: bool | None = None


@dataclass(frozen=True)
class ArtifactInfo:
    model_id: int
    name: str
    format: str
    precision: str
    family: str | None = None  # input-size variants share a family (mobilenet_v2_96 ...)
    input_size: int | None = None
    # The first input's shape when no input has a dynamic batch axis: batch 1 only.
    fixed_batch: tuple[int | None, ...] | None = None
    # ("runtime" or "runtime:precision", why it cannot run the model), found when it was added
    refused_by: tuple[tuple[str, str], ...] = ()
    # (name, registered shape, batch axis, the axes the file leaves open): what a sweep checks
    inputs: tuple[tuple[str, tuple[int | None, ...], int | None, tuple[int, ...]], ...] = ()
    # Why the file's shapes are all fixed where a converter fixed them (onnx2tf), else None
    fixed_by: str | None = None


@dataclass(frozen=True)
class PlannedTrial:
    device: str
    model: str
    model_id: int
    runtime: str
    requested_device: str
    precision: str
    batch_size: int
    scenario: str
    scenario_params: dict[str, float]
    repeat: int
    timeout_s: float
    runtime_options: dict[str, Any] = field(default_factory=dict)
    input_shapes: dict[str, list[int]] | None = None  # a sweep's shapes, by input


@dataclass
class Plan:
    trials: list[PlannedTrial] = field(default_factory=list)
    skipped: list[dict[str, Any]] = field(default_factory=list)
    devices: list[str] = field(default_factory=list)


class PlanError(ValueError):
    """A campaign that cannot be planned at all (no device, no model, too large)."""


def select_devices(spec: CampaignSpec, devices: list[DeviceInfo]) -> list[DeviceInfo]:
    selector = spec.devices
    chosen = []
    for device in devices:
        if selector.names and device.name not in selector.names:
            continue
        if selector.tags and not set(selector.tags) <= set(device.tags):
            continue
        if selector.classes and device.device_class not in selector.classes:
            continue
        chosen.append(device)
    return chosen


def resolve_variant(choice: ModelChoice, artifacts: list[ArtifactInfo]) -> tuple[str, str | None]:
    """The model variant a spec entry means, and why none fits (or None).

    A name of a built variant is that variant. A family name (mobilenet_v2) with an
    input_size is that size's variant; without one, the family's largest input size.
    """
    sizes = sorted({a.input_size for a in artifacts if a.family == choice.name and a.input_size})
    exact = next((a for a in artifacts if a.name == choice.name), None)
    if choice.input_size is None:
        if exact is not None or not sizes:
            return choice.name, None
        return _variant_name(artifacts, choice.name, sizes[-1]), None
    if exact is not None and exact.input_size == choice.input_size:
        return choice.name, None
    if choice.input_size in sizes:
        return _variant_name(artifacts, choice.name, choice.input_size), None
    built = ", ".join(str(s) for s in sizes) or "none"
    return choice.name, f"{choice.name} has no input size {choice.input_size} (built: {built})"


def refused_options(device: DeviceInfo, runtime: RuntimeChoice) -> str | None:
    """Why `runtime` on `device` would not apply the options the spec gives it (its agent
    says which it takes), or None; an agent that does not say checks them at load."""
    takes = device.options.get(runtime.name)
    if takes is None:
        return None
    return options_refusal(runtime.name, runtime.options.model_dump(exclude_defaults=True), takes)


def loaded_formats(device: DeviceInfo, runtime: RuntimeChoice) -> tuple[str, ...] | None:
    """The formats `runtime` loads on `runtime.device` of `device`, preferred first: as its
    agent reported them, else as agents before that loaded them (None: not known)."""
    said = device.formats.get(runtime.name, {}).get(runtime.device)
    if said is not None:
        return tuple(said)
    before = FORMATS_BEFORE_AGENTS_SAID
    return before.get((runtime.name, runtime.device)) or before.get((runtime.name, None))


def interleaved_runs(
    spec: CampaignSpec,
    configurations: list[tuple[DeviceInfo, ArtifactInfo, dict[str, Any]]],
    timeout_s: float,
) -> list[PlannedTrial]:
    """Every run of every configuration, interleaved (A B C A B C ...), as asv interleaves
    its rounds: slow drift of the device lands on every configuration alike, not on
    whichever ran last."""
    return [
        PlannedTrial(
            device=device.name,
            model_id=artifact.model_id,
            scenario=spec.scenario.kind,
            scenario_params=spec.scenario.params(),
            repeat=run,
            timeout_s=timeout_s,
            **config,
        )
        for run in range(1, spec.runs + 1)
        for device, artifact, config in configurations
    ]


def _variant_name(artifacts: list[ArtifactInfo], family: str, size: int) -> str:
    return next(a.name for a in artifacts if a.family == family and a.input_size == size)


def why_not(
    device: DeviceInfo,
    model_name: str,
    size_reason: str | None,
    runtime: RuntimeChoice,
    precision: str,
    by_key: dict[tuple[str, str, str], ArtifactInfo],
    batch: int = 1,
) -> tuple[str | None, ArtifactInfo | None]:
    """(why this device cannot run the combination, or None; the artifact it would load)."""
    formats = loaded_formats(device, runtime)
    runs = device.precisions.get(runtime.name, {}).get(runtime.device)
    artifact = next(
        (
            by_key[(model_name, f, precision)]
            for f in formats or ()
            if (model_name, f, precision) in by_key
        ),
        None,
    )
    if runtime.name not in device.runtimes:
        return f"runtime {runtime.name} is not installed on {device.name}", None
    if formats is None:
        return (
            f"the agent on {device.name} does not say which model formats {runtime.name} "
            "loads: upgrade the agent (edgebench devices provision)",
            None,
        )
    if runtime.device not in device.runtimes[runtime.name]:
        offered = ", ".join(device.runtimes[runtime.name]) or "none"
        return (
            f"{runtime.name} on {device.name} offers no {runtime.device} (offers: {offered})",
            None,
        )
    refused = refused_options(device, runtime)
    if refused:
        return refused, None
    if runs is not None and COMPUTES_IN.get(precision, precision) not in runs:
        return (
            f"{runtime.name} {runtime.device} on {device.name} runs no {precision} "
            f"(runs: {', '.join(runs) or 'nothing'})",
            None,
        )
    if size_reason:
        return size_reason, None
    if artifact is None and formats == ("tflite-edgetpu",):
        return (
            f"litert on EdgeTPU needs an Edge-TPU-compiled model: no {precision} one of "
            f"{model_name} (compile its int8 .tflite with edgetpu_compiler, then `models add`)",
            None,
        )
    # Why a runtime cannot take the model was found when it was added (every artifact of
    # the model carries it): said whether or not a file for the runtime exists.
    known = artifact or next((a for key, a in by_key.items() if key[0] == model_name), None)
    refusals = dict(known.refused_by) if known is not None else {}
    refused, what = refusals.get(runtime.name), model_name
    if not refused:
        refused, what = refusals.get(f"{runtime.name}:{precision}"), f"{model_name} {precision}"
    if refused:
        return f"{runtime.name} cannot run {what}: {refused}", None
    if artifact is None:
        return f"no {' or '.join(formats)} {precision} artifact of {model_name}", None
    if batch != 1 and artifact.fixed_batch is not None:
        return (
            f"{model_name} ({artifact.format}) has a fixed batch (input shape "
            f"{list(artifact.fixed_batch)}): batch_size {batch} cannot run "
            f"({artifact.fixed_by or 'export the model with a dynamic batch dimension'})",
            None,
        )
    return None, artifact


def shape_reason(
    model_name: str, artifact: ArtifactInfo, shapes: dict[str, list[int]] | None
) -> str | None:
    """Why the artifact cannot take a sweep's shapes (an input it lacks, another rank, a
    dimension its file fixes), or None."""
    if not shapes:
        return None
    known = {name: (shape, axis, open_axes) for name, shape, axis, open_axes in artifact.inputs}
    for name, wanted in shapes.items():
        if name not in known:
            listed = ", ".join(known) or "none recorded: add the model again"
            return f"{model_name} ({artifact.format}) has no input {name!r} (inputs: {listed})"
        shape, axis, open_axes = known[name]
        fixed = [
            i
            for i, (d, w) in enumerate(zip(shape, wanted))
            if i != axis and i not in open_axes and d != w
        ]
        if len(wanted) != len(shape) or fixed:
            where = f"axis {fixed[0]} is fixed" if fixed else f"it has {len(shape)} dimensions"
            return (
                f"{model_name} ({artifact.format}) cannot take {name}={wanted}: {where} "
                f"(registered {list(shape)}, open axes {list(open_axes) or 'none'}"
                + (f"; {artifact.fixed_by}" if artifact.fixed_by else "")
                + ")"
            )
    return None


def scenario_reason(device: DeviceInfo, kind: str) -> str | None:
    """Why the device cannot run the scenario (LoadGen missing for an mlperf_* one), or None."""
    if kind.startswith("mlperf_") and device.has_loadgen is False:
        return (
            f"{kind} needs MLPerf LoadGen on {device.name}: pip install 'edgebench[mlperf]' there"
        )
    return None


def _check_selection(
    spec: CampaignSpec,
    devices: list[DeviceInfo],
    artifacts: list[ArtifactInfo],
    chosen: list[DeviceInfo],
) -> None:
    """Refuse a spec that selects no device, names unknown devices or unknown models."""
    if not chosen:
        known = ", ".join(sorted(d.name for d in devices)) or "none registered"
        raise PlanError(f"devices: no registered device matches the selector (devices: {known})")
    if spec.devices.names:
        missing = sorted(set(spec.devices.names) - {d.name for d in devices})
        if missing:
            raise PlanError(f"devices.names: unknown device(s): {', '.join(missing)}")
    known_models = {a.name for a in artifacts} | {a.family for a in artifacts if a.family}
    unknown = [m.name for m in spec.model_choices() if m.name not in known_models]
    if unknown:
        raise PlanError(
            f"models: unknown model(s): {', '.join(unknown)} "
            f"(available: {', '.join(sorted(known_models)) or 'none; run edgebench models build'})"
        )


def trial_timeout_s(spec: CampaignSpec) -> float:
    """A trial's time limit: its warm-up, scenario, idle baseline and cool-down, plus the
    allowance for process start, load and first run."""
    policy = spec.policy
    return (
        policy.warmup_s
        + spec.scenario.duration_s(policy.max_s)
        + policy.idle_baseline_s
        + (policy.cool_timeout_s if policy.cool_below_c is not None else 0.0)
        + TRIAL_OVERHEAD_S
    )


def expand(spec: CampaignSpec, devices: list[DeviceInfo], artifacts: list[ArtifactInfo]) -> Plan:
    chosen = select_devices(spec, devices)
    _check_selection(spec, devices, artifacts, chosen)
    by_key = {(a.name, a.format, a.precision): a for a in artifacts}
    timeout_s = trial_timeout_s(spec)
    plan = Plan(devices=[d.name for d in chosen])
    # By class, a trial runs once on any device of the class: spread over them, least loaded
    # and online first. By name or tag, it runs on every selected device.
    spread = bool(spec.devices.classes)
    groups: dict[str, list[DeviceInfo]] = {}
    for device in chosen:
        groups.setdefault(device.device_class if spread else device.name, []).append(device)
    load: dict[str, int] = {d.name: 0 for d in chosen}
    combos = itertools.product(
        groups.items(),
        [(choice, shapes) for choice in spec.model_choices() for shapes in choice.shape_sets()],
        spec.runtime_choices(),
        spec.precisions,
        spec.batch_sizes,
    )
    configurations: list[tuple[DeviceInfo, ArtifactInfo, dict[str, Any]]] = []
    for (group, members), (choice, shapes), runtime, precision, batch in combos:
        model_name, size_reason = resolve_variant(choice, artifacts)
        base = {
            "model": model_name,
            "runtime": runtime.name,
            "requested_device": runtime.device,
            "precision": precision,
            "batch_size": batch,
            **({"input_shapes": shapes} if shapes else {}),
        }
        verdicts = []
        for d in members:
            reason, artifact = why_not(
                d, model_name, size_reason, runtime, precision, by_key, batch
            )
            reason = reason or shape_reason(model_name, artifact, shapes)
            verdicts.append((d, reason or scenario_reason(d, spec.scenario.kind), artifact))
        able = [(d, artifact) for d, reason, artifact in verdicts if reason is None]
        if not able:
            if spread:
                reasons = "; ".join(dict.fromkeys(reason for _, reason, _ in verdicts))
                plan.skipped.append({**base, "device": f"any {group}", "reason": reasons})
            else:
                plan.skipped += [{**base, "device": d.name, "reason": r} for d, r, _ in verdicts]
            continue
        # Every run of a configuration on one device: its runs are compared with each other.
        device, artifact = min(able, key=lambda pair: (not pair[0].online, load[pair[0].name]))
        load[device.name] += spec.runs
        options = runtime.options.model_dump(exclude_defaults=True)
        configurations.append((device, artifact, {**base, "runtime_options": options}))
        if len(configurations) * spec.runs > MAX_TRIALS:
            raise PlanError(f"the campaign expands to more than {MAX_TRIALS} trials; split it")
    plan.trials = interleaved_runs(spec, configurations, timeout_s)
    if not plan.trials:
        raise PlanError(
            "the campaign has no runnable trial: "
            + "; ".join(sorted({s["reason"] for s in plan.skipped}))
        )
    return plan
