"""SQLAlchemy 2.0 models. Any change here needs an Alembic migration in migrations/versions."""

from __future__ import annotations

from datetime import datetime, timezone
from enum import Enum
from typing import Any, Optional

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from agents.contract import metrics
from agents.contract.metrics import Metric

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Word(str, Enum):
    """A state or outcome kept as its word: equal to that word and hashed as it (str comes
    first in its MRO, so a set or dict of the words the store returns finds it), and
    printed as it."""

    def __str__(self) -> str:
        return self.value


class TrialState(Word):
    """Where a trial is. Terminal: done, failed, cancelled."""

    PENDING = "pending"  # planned, waiting for its device
    QUEUED = "queued"  # sent to its device's queue
    RUNNING = "running"  # its agent said it started
    DONE = "done"  # measured
    FAILED = "failed"  # could not be measured (its error says why)
    CANCELLED = "cancelled"


class CampaignState(Word):
    RUNNING = "running"
    DONE = "done"  # every trial measured
    FINISHED_WITH_FAILURES = "finished with failures"
    CANCELLED = "cancelled"


PENDING, QUEUED, RUNNING, DONE, FAILED, CANCELLED = TrialState
TERMINAL = (DONE, FAILED, CANCELLED)


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON}


class Device(Base):
    __tablename__ = "devices"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    device_class: Mapped[str] = mapped_column(String(64))
    tags: Mapped[list[Any]] = mapped_column(default=list)
    facts: Mapped[dict[str, Any]] = mapped_column(default=dict)
    agent_version: Mapped[Optional[str]] = mapped_column(String(32))
    boot_id: Mapped[Optional[str]] = mapped_column(String(64))
    retired: Mapped[bool] = mapped_column(Boolean, default=False)
    registered_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    last_heartbeat_at: Mapped[Optional[datetime]] = mapped_column(DateTime(timezone=True))
    current_trial: Mapped[Optional[str]] = mapped_column(String(40))
    # The agent's own clock at its latest registration: a delayed, older one is refused.
    registration_sent_at: Mapped[Optional[float]] = mapped_column(Float)
    # The agent's clock at the newest heartbeat taken: an older one is a replay (SECURITY.md).
    heartbeat_sent_at: Mapped[Optional[float]] = mapped_column(Float)


class EnrollmentToken(Base):
    """A token that turns into a device key at registration (docs/SECURITY.md). Only the
    hash of its secret is kept; ``id`` is its public part."""

    __tablename__ = "enrollment_tokens"

    id: Mapped[str] = mapped_column(String(16), primary_key=True)
    secret_hash: Mapped[str] = mapped_column(String(64))
    # fnmatch pattern the device name must match (None: any name).
    name_pattern: Mapped[Optional[str]] = mapped_column(String(128))
    # The controller's own token for agents on its machine: used any number of times.
    local: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    expires_at: Mapped[Optional[datetime]] = mapped_column(DateTime(timezone=True))
    used_at: Mapped[Optional[datetime]] = mapped_column(DateTime(timezone=True))
    used_by: Mapped[Optional[str]] = mapped_column(String(64))
    revoked_at: Mapped[Optional[datetime]] = mapped_column(DateTime(timezone=True))


class DeviceCredential(Base):
    """A device's signing key. One unrevoked row per device at most; retiring revokes it."""

    __tablename__ = "device_credentials"

    id: Mapped[int] = mapped_column(primary_key=True)
    device_id: Mapped[int] = mapped_column(ForeignKey("devices.id"), index=True)
    token_id: Mapped[str] = mapped_column(ForeignKey("enrollment_tokens.id"))
    key: Mapped[str] = mapped_column(String(64))  # hex; HMAC needs the key itself
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    revoked_at: Mapped[Optional[datetime]] = mapped_column(DateTime(timezone=True))


class RejectedMessage(Base):
    """A message ingest refused for a security reason (unsigned, bad signature, not
    assigned, replay...), kept so that `devices show` can count them."""

    __tablename__ = "rejected_messages"

    id: Mapped[int] = mapped_column(primary_key=True)
    device: Mapped[Optional[str]] = mapped_column(String(64), index=True)  # as the message claims
    kind: Mapped[Optional[str]] = mapped_column(String(32))
    reason: Mapped[str] = mapped_column(String(32))
    detail: Mapped[str] = mapped_column(Text)
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ModelCard(Base):
    """What a model is, apart from its files: task, inputs, provenance, and the data that
    lets a trial measure fidelity (fp32 reference outputs) and accuracy (labelled data).

    ``data`` maps a role ("reference", "evaluation", "sample_input") to a stored file:
    {"sha256", "size", "path"}. ``name`` is the variant name the artifacts carry
    (e.g. mobilenet_v2_96); ``family`` and ``input_size`` group the input-size variants.
    """

    __tablename__ = "model_cards"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    family: Mapped[str] = mapped_column(String(128))
    input_size: Mapped[Optional[int]] = mapped_column(Integer)
    version: Mapped[str] = mapped_column(String(32))
    task: Mapped[str] = mapped_column(String(64))
    layout: Mapped[Optional[str]] = mapped_column(String(16))
    preprocessing: Mapped[dict[str, Any]] = mapped_column(default=dict)
    inputs: Mapped[list[Any]] = mapped_column(default=list)
    source: Mapped[str] = mapped_column(Text)
    license: Mapped[str] = mapped_column(String(64))
    data: Mapped[dict[str, Any]] = mapped_column(default=dict)
    recipe: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Model(Base):
    """A model artifact the controller can send: content-addressed by sha256.

    One row per (model variant, format, precision); ``name`` matches a ModelCard's name.
    """

    __tablename__ = "models"
    __table_args__ = (UniqueConstraint("name", "format", "precision"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(128))
    format: Mapped[str] = mapped_column(String(32))
    precision: Mapped[str] = mapped_column(String(16))
    sha256: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(BigInteger)
    path: Mapped[str] = mapped_column(Text)
    inputs: Mapped[list[Any]] = mapped_column(default=list)
    recipe: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Campaign(Base):
    __tablename__ = "campaigns"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(128))
    spec: Mapped[dict[str, Any]] = mapped_column()
    state: Mapped[str] = mapped_column(String(32), default=CampaignState.RUNNING)
    skipped: Mapped[list[Any]] = mapped_column(default=list)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    finished_at: Mapped[Optional[datetime]] = mapped_column(DateTime(timezone=True))

    trials: Mapped[list[Trial]] = relationship(back_populates="campaign")


class Trial(Base):
    __tablename__ = "trials"
    __table_args__ = (
        Index("ix_trials_device_state", "device_id", "state"),
        Index("ix_trials_campaign_state", "campaign_id", "state"),
        # The dashboard's Compare, Trade-offs and Diff pages: trials of some models at a batch
        # size (and precision, campaign), grouped into configurations, read from the index
        # alone (migrations 0005, 0011).
        Index(
            "ix_trials_model_batch",
            "model_id",
            "batch_size",
            "precision",
            "campaign_id",
            "device_id",
            "runtime",
            "scenario",
            "config_key",
            "id",
        ),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id"))
    device_id: Mapped[int] = mapped_column(ForeignKey("devices.id"))
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id"))
    runtime: Mapped[str] = mapped_column(String(32))
    requested_device: Mapped[str] = mapped_column(String(32))
    # agents.contract.RuntimeOptions as given in the spec (threads, hints, cache...).
    runtime_options: Mapped[Optional[dict[str, Any]]] = mapped_column(JSON)
    precision: Mapped[str] = mapped_column(String(16))
    batch_size: Mapped[int] = mapped_column(Integer)
    scenario: Mapped[str] = mapped_column(String(32))
    scenario_params: Mapped[Optional[dict[str, Any]]] = mapped_column(JSON)
    # A shape sweep's input shapes ({input: shape}); null: the shapes registered with the model.
    input_shapes: Mapped[Optional[dict[str, Any]]] = mapped_column(JSON)
    # scenario_params, runtime_options and input_shapes as one canonical text
    # (configurations.config_key): what the dashboard groups configurations by, indexed.
    config_key: Mapped[str] = mapped_column(Text, default="", server_default="")
    seq: Mapped[int] = mapped_column(Integer)  # order within the campaign
    repeat: Mapped[int] = mapped_column(Integer, default=1)
    policy: Mapped[dict[str, Any]] = mapped_column()
    timeout_s: Mapped[float] = mapped_column(Float)
    state: Mapped[str] = mapped_column(String(16), default=PENDING)
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    boot_id: Mapped[Optional[str]] = mapped_column(String(64))
    # The signature of the result message that finished the trial: the same one again is a
    # redelivery, another one a replay.
    result_signature: Mapped[Optional[str]] = mapped_column(String(64))
    error: Mapped[Optional[str]] = mapped_column(Text)
    note: Mapped[Optional[str]] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    dispatched_at: Mapped[Optional[datetime]] = mapped_column(DateTime(timezone=True))
    started_at: Mapped[Optional[datetime]] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[Optional[datetime]] = mapped_column(DateTime(timezone=True))

    campaign: Mapped[Campaign] = relationship(back_populates="trials")
    device: Mapped[Device] = relationship()
    model: Mapped[Model] = relationship()
    result: Mapped[Optional[Result]] = relationship(back_populates="trial", uselist=False)


def _metric_column(metric: Metric) -> Any:
    """The store column of a declared metric: null unless it is a required summary figure."""
    if metric.kind is str:
        sql_type: Any = String(metric.length)
    elif metric.kind is int:
        sql_type = BigInteger if metric.wide else Integer
    else:
        sql_type = {float: Float, bool: Boolean}[metric.kind]
    return mapped_column(sql_type, nullable=not metric.required)


# A column per declared metric, mixed into Result: declaring a metric is its column here
# (its migration adds it to existing stores).
MetricColumns = type("MetricColumns", (), {m.name: _metric_column(m) for m in metrics.METRICS})


class Result(MetricColumns, Base):
    """One measurement of a trial. Unique per trial: a redelivered result is not a second row."""

    __tablename__ = "results"
    # The dashboard averages these per device × runtime over many trials: an index holding
    # them spares reading each wide row (environment, placement) (migration 0005). The
    # dashboard also counts result ids and takes the newest: SQLite keeps the rowid in every
    # index, PostgreSQL needs it included, or it reads every row's heap page (migration 0007;
    # as a key column it steered SQLite's planner off this index).
    __table_args__ = (
        Index(
            "ix_results_dashboard",
            "trial_id",
            "actual_device",
            "p50_ms",
            "p90_ms",
            "p99_ms",
            "mean_ms",
            "throughput_ips",
            "peak_rss_mb",
            "energy_mj_per_inference",
            "accuracy",
            "fidelity_cosine",
            "fallback",
            "throttled",
            postgresql_include=["id"],
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    trial_id: Mapped[str] = mapped_column(ForeignKey("trials.id"), unique=True)
    attempt: Mapped[int] = mapped_column(Integer)
    boot_id: Mapped[str] = mapped_column(String(64))
    # Every figure of agents.contract.metrics is a column of its name (MetricColumns).
    placement: Mapped[dict[str, Any]] = mapped_column(default=dict)
    environment: Mapped[dict[str, Any]] = mapped_column(default=dict)
    scenario_report: Mapped[Optional[dict[str, Any]]] = mapped_column(JSON)
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    trial: Mapped[Trial] = relationship(back_populates="result")
    samples: Mapped[Optional[ResultSamples]] = relationship(uselist=False)
    profile: Mapped[Optional[ResultProfile]] = relationship(uselist=False)


class ResultProfile(Base):
    """A result's operator profile (agents.contract.profile): the pass's figures, every node
    compressed (zlib'd JSON, read one trial at a time), and one row per op type."""

    __tablename__ = "result_profiles"

    result_id: Mapped[int] = mapped_column(ForeignKey("results.id"), primary_key=True)
    method: Mapped[str] = mapped_column(String(200))
    requested_unit: Mapped[str] = mapped_column(String(128))
    queries: Mapped[int] = mapped_column(Integer)
    wall_ms: Mapped[Optional[float]] = mapped_column(Float)
    total_ms: Mapped[Optional[float]] = mapped_column(Float)  # the ops' time per query
    note: Mapped[Optional[str]] = mapped_column(Text)
    nodes_zlib: Mapped[bytes] = mapped_column(LargeBinary)

    op_types: Mapped[list[ProfileOpType]] = relationship(
        order_by="ProfileOpType.id", cascade="all, delete-orphan"
    )


class ProfileOpType(Base):
    """One op type on one unit in one precision, in one result's profile."""

    __tablename__ = "profile_op_types"

    id: Mapped[int] = mapped_column(primary_key=True)
    result_id: Mapped[int] = mapped_column(ForeignKey("result_profiles.result_id"), index=True)
    op_type: Mapped[str] = mapped_column(String(128))
    unit: Mapped[str] = mapped_column(String(128))
    precision: Mapped[Optional[str]] = mapped_column(String(16))
    nodes: Mapped[int] = mapped_column(Integer)
    calls: Mapped[float] = mapped_column(Float)  # per query
    time_ms: Mapped[Optional[float]] = mapped_column(Float)  # per query
    share: Mapped[Optional[float]] = mapped_column(Float)
    fallback_nodes: Mapped[int] = mapped_column(Integer)


class ResultSamples(Base):
    """Every latency sample of a result, in nanoseconds, kept apart from the summary row."""

    __tablename__ = "result_samples"

    result_id: Mapped[int] = mapped_column(ForeignKey("results.id"), primary_key=True)
    samples_ns: Mapped[list[Any]] = mapped_column()
