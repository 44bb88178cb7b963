"""Run settings: one frozen Config, from flags > environment > config file > defaults."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

LogFormat = Literal["auto", "json", "console"]

ENV_PREFIX = "MGN_CUTOVER_"


@dataclass(frozen=True)
class Config:
    """Effective settings of one command. Holds no credentials: those come from boto3's chain."""

    region: str | None = None
    profile: str | None = None
    endpoint_url: str | None = None
    account_id: str | None = None
    concurrency: int = 16
    finalize_rate: float = 5.0
    describe_rate: float = 5.0
    poll_interval_s: float = 15.0
    reconcile_timeout_s: float = 1800.0
    max_attempts: int = 8
    server_deadline_s: float = 600.0
    require_first_boot: bool = True
    application_gate: bool = True
    verify_instances: bool = False
    report_dir: Path = field(default_factory=lambda: Path("reports"))
    state_dir: Path = field(default_factory=lambda: Path(".mgn-cutover"))
    log_format: LogFormat = "auto"
