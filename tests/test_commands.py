"""The commands' input rules that need no subprocess: which region and account a wave runs in."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from orchestrator import collector, commands
from orchestrator.commands import for_wave
from orchestrator.config import load_config
from orchestrator.errors import ConfigError, InputError
from orchestrator.plan import Application, Server, Wave

APP = "app-0a1b2c3d4e5f6a7b8"
WAVE = Wave("w", (Application(APP, "web", (Server("s-0a1b2c3d4e5f6a7b8", APP),)),))


def test_settings_apply_to_a_plan_that_names_no_region_or_account() -> None:
    """A plan without region and accountID runs where the flags (or env, or config) say."""
    config = load_config(None, {"MGN_CUTOVER_ACCOUNT_ID": "111122223333"}, {"region": "eu-west-1"})
    assert (for_wave(config, WAVE).region, for_wave(config, WAVE).account_id) == (
        "eu-west-1",
        "111122223333",
    )


def test_the_plan_applies_when_settings_name_none_or_agree() -> None:
    """The plan's region and accountID apply when nothing else names them, or names the same."""
    wave = Wave("w", WAVE.applications, account_id="111122223333", region="us-east-1")
    for overrides in ({}, {"region": "us-east-1", "account_id": "111122223333"}):
        config = for_wave(load_config(None, {}, overrides), wave)
        assert (config.region, config.account_id) == ("us-east-1", "111122223333")


def test_a_contradicting_setting_is_refused_naming_both_places() -> None:
    """A region from a flag other than the plan's raises ConfigError naming flag and plan line."""
    wave = Wave("w", WAVE.applications, region="us-east-1", source=Path("w.yaml"), region_at=(3, 9))
    with pytest.raises(ConfigError) as info:
        for_wave(load_config(None, {}, {"region": "eu-west-1"}), wave)
    assert str(info.value) == (
        "--region: region eu-west-1 contradicts wave w's region: us-east-1 at w.yaml:3:9; "
        "drop the setting or make them agree"
    )


def test_a_run_pauses_the_programs_collector_before_it_reads_its_plan(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """In the program, `run` stops the cyclic collector before it reads its plan: what a run
    sets up lives all night and is frozen once its pre-flight is done (`collector`)."""
    order: list[str] = []

    def refused(ns: argparse.Namespace) -> None:
        order.append("plan read")
        raise InputError("plan.yaml:1:1: refused by the test")

    monkeypatch.setattr(collector, "_program", True)
    monkeypatch.setattr(collector.gc, "disable", lambda: order.append("collector paused"))
    monkeypatch.setattr(commands, "load_inputs", refused)
    with pytest.raises(InputError):
        commands.cmd_run(argparse.Namespace())
    assert order == ["collector paused", "plan read"]
