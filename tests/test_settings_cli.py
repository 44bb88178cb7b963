"""Settings and inputs as a user meets them: a subprocess, its exit code, its words."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from orchestrator.state import endpoint_scope
from tests.runhelp import (
    aid,
    cli_env,
    mgn_cutover,
    outcomes,
    report,
    run_args,
    server,
    sid,
    write_plan,
)

NOWHERE = "http://127.0.0.1:9"  # nothing listens: a command that gets this far fails loudly


def one_wave(folder: Path, wave: str, apps: dict[str, list[str]], **top: Any) -> Path:
    """A plan file with extra top-level keys (region, accountID) and application names."""
    doc: dict[str, Any] = {"wave": wave, **top, "applications": []}
    for app_id, (name, *ids) in apps.items():
        doc["applications"].append({"applicationID": app_id, "name": name, "sourceServerIDs": ids})
    path = folder / f"{wave}.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def plain(args: list[str]) -> list[str]:
    """`run` arguments printing refusals as plain `where: message` lines, not JSON."""
    args[args.index("--log-format") + 1] = "console"
    return args


# --- arguments ---------------------------------------------------------------------------------


def test_unknown_flag_suggests_the_closest_one() -> None:
    """`run --finalise-rate 5` exits 2 with one line naming --finalize-rate; no traceback."""
    out = mgn_cutover(["run", "w.yaml", "--wave", "w", "--finalise-rate", "5"], cli_env(NOWHERE))
    assert out.returncode == 2
    assert out.stdout == "wave w: refused exit=2 why: bad arguments (see stderr)\n"  # for cron
    assert out.stderr == (
        "mgn-cutover run: unknown flag --finalise-rate; did you mean --finalize-rate? "
        "(see mgn-cutover run --help)\n"
    )
    out = mgn_cutover(["plan", "w.yaml", "--wave", "w", "--regoin=eu-west-1"], cli_env(NOWHERE))
    assert out.returncode == 2 and "unknown flag --regoin; did you mean --region?" in out.stderr


def test_bad_arguments_exit_2_with_one_line() -> None:
    """A bad choice or a missing argument is one line on stderr, exit 2, no usage dump."""
    for args in (
        ["run", "w.yaml", "--wave", "w", "--log-format", "xml"],
        ["run", "w.yaml"],
        ["plan", "w.yaml", "--wave", "w", "--concurrency", "3"],  # a run-level flag
        [],
    ):
        out = mgn_cutover(args, cli_env(NOWHERE))
        assert out.returncode == 2, args
        assert len(out.stderr.splitlines()) == 1 and "Traceback" not in out.stderr, out.stderr
        assert out.stderr.startswith("mgn-cutover")


def test_commands_do_not_import_the_cli() -> None:
    """orchestrator.commands loads without orchestrator.cli: the CLI depends on it, not back."""
    probe = "import sys, orchestrator.commands; print('orchestrator.cli' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert (out.returncode, out.stdout) == (0, "False\n"), out.stderr


# --- a server in two waves ---------------------------------------------------------------------


@pytest.mark.parametrize("command", ["validate", "plan", "run"])
def test_a_server_in_two_waves_is_refused(tmp_path: Path, command: str) -> None:
    """validate, plan and run exit 2 naming both places of a server planned by two waves."""
    first = write_plan(tmp_path, "w1", {aid(0): [sid(0, 0), sid(0, 1)]})
    second = write_plan(tmp_path, "w2", {aid(1): [sid(1, 0), sid(0, 1)]})
    args = [command, str(tmp_path)]
    if command != "validate":
        args += ["--wave", "w1", "--log-format", "console"]
    out = mgn_cutover(args, cli_env(NOWHERE))
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert out.stderr.splitlines() == [
        f"{first}:7:5: source server {sid(0, 1)} of wave w1 is also planned at {second}:7:5 in "
        "wave w2",
        f"{second}:7:5: source server {sid(0, 1)} of wave w2 is also planned at {first}:7:5 in "
        "wave w1",
    ]


# --- the plan's region and accountID against settings ------------------------------------------


def test_region_flag_contradicting_the_plan_is_refused(tmp_path: Path) -> None:
    """--region (or MGN_CUTOVER_REGION) other than the plan's region: exit 2, naming both."""
    plan = one_wave(tmp_path, "w", {aid(0): ["web", sid(0, 0)]}, region="us-east-1")
    out = mgn_cutover(
        plain(run_args(plan, "w", tmp_path, "--region", "eu-west-1")), cli_env(NOWHERE)
    )
    assert out.returncode == 2
    assert out.stderr == (
        f"--region: region eu-west-1 contradicts wave w's region: us-east-1 at {plan}:2:9; "
        "drop the setting or make them agree\n"
    )
    env = cli_env(NOWHERE, {"MGN_CUTOVER_REGION": "eu-west-1"})
    for args in (["plan", str(plan), "--wave", "w"], ["validate", str(plan)]):
        out = mgn_cutover(args, env)
        assert out.returncode == 2, args
        assert out.stderr.startswith("env MGN_CUTOVER_REGION: region eu-west-1 contradicts wave w")


def test_account_in_config_contradicting_the_plan_is_refused(tmp_path: Path) -> None:
    """A config file's account_id other than the plan's accountID names the config's line."""
    plan = one_wave(tmp_path, "w", {aid(0): ["web", sid(0, 0)]}, accountID="111122223333")
    config = tmp_path / "config.yaml"
    config.write_text('region: us-east-1\naccount_id: "444455556666"\n')
    args = plain(run_args(plan, "w", tmp_path, "--config", str(config)))
    out = mgn_cutover(args, cli_env(NOWHERE))
    assert out.returncode == 2
    assert out.stderr == (
        f"{config}:2:13: account_id 444455556666 contradicts wave w's accountID: 111122223333 "
        f"at {plan}:2:12; drop the setting or make them agree\n"
    )
    assert not (tmp_path / "state").exists()


# --- --application by name --------------------------------------------------------------------


@pytest.mark.usefixtures("fake_credentials")
def test_application_by_name(emulator: Any, work_dir: Path) -> None:
    """--application takes the plan's application name as well as its ID."""
    groups = {aid(a): [sid(a, 0)] for a in range(3)}
    emulator.seed({"servers": [server(ids[0], a) for a, ids in groups.items()]})
    plan = write_plan(work_dir, "w", groups)  # names: app0, app1, app2
    args = run_args(plan, "w", work_dir, "--application", "app1", "--application", aid(2))
    out = mgn_cutover(args, cli_env(emulator.url))
    assert out.returncode == 0, out.stderr
    got = outcomes(report(work_dir, "w"))
    assert {s for s, o in got.items() if o == "finalized"} == {sid(1, 0), sid(2, 0)}
    assert got[sid(0, 0)] == "not_attempted"


def test_ambiguous_application_name_lists_the_ids(tmp_path: Path) -> None:
    """A name two applications share is refused (exit 2), listing their IDs."""
    plan = one_wave(
        tmp_path,
        "w",
        {aid(0): ["web", sid(0, 0)], aid(1): ["web", sid(1, 0)], aid(2): ["db", sid(2, 0)]},
    )
    out = mgn_cutover(
        plain(run_args(plan, "w", tmp_path, "--application", "web")), cli_env(NOWHERE)
    )
    assert out.returncode == 2
    assert out.stderr == (
        f'--application: "web" names 2 applications of wave w: {aid(0)}, {aid(1)}; give an ID\n'
    )


# --- state_dir ---------------------------------------------------------------------------------


@pytest.mark.usefixtures("fake_credentials")
def test_state_dir_is_per_user_by_default_and_absolute_when_relative(
    emulator: Any, tmp_path: Path
) -> None:
    """Without --state-dir the journal lands in $XDG_STATE_HOME/mgn-cutover, whatever the cwd;
    a relative --state-dir is resolved against the cwd and logged once, absolute."""
    emulator.seed({"servers": [server(sid(0, 0), aid(0))]})
    plan = write_plan(tmp_path, "w", {aid(0): [sid(0, 0)]})
    xdg = tmp_path / "xdg"
    env = cli_env(emulator.url, {"XDG_STATE_HOME": str(xdg)})
    args = run_args(plan, "w", tmp_path, "--dry-run")
    at = args.index("--state-dir")
    del args[at : at + 2]
    for cwd in (tmp_path, tmp_path / "elsewhere"):
        cwd.mkdir(exist_ok=True)
        out = subprocess.run(
            [sys.executable, "-m", "orchestrator", *args],
            env=env, cwd=cwd, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert out.returncode == 0, out.stderr  # a dry run of a ready wave: go (issue 21)
        events = [json.loads(line) for line in out.stderr.splitlines()]
        logged = [e for e in events if e["event"] == "state_dir"]
        assert [(e["path"], e["source"]) for e in logged] == [(str(xdg / "mgn-cutover"), "default")]
    rehearsal = endpoint_scope(emulator.url)  # an emulator's journal: never the night's folder
    assert (xdg / "mgn-cutover" / rehearsal / "w" / "journal.sqlite3").is_file()

    ops = tmp_path / "ops"
    ops.mkdir()
    out = subprocess.run(
        [sys.executable, "-m", "orchestrator", *args, "--state-dir", "state"],
        env=env, cwd=ops, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr  # a dry run of a ready wave: go (issue 21)
    logged = [json.loads(line) for line in out.stderr.splitlines()]
    assert [e["path"] for e in logged if e["event"] == "state_dir"] == [str(ops / "state")]
    assert (ops / "state" / rehearsal / "w" / "journal.sqlite3").is_file()


# --- the cutover window ------------------------------------------------------------------------


def test_run_refuses_a_window_that_ends_before_it_starts(tmp_path: Path) -> None:
    """`run --not-before 23:00 --not-after 22:00` exits 2 saying why; nothing else happens."""
    plan = write_plan(tmp_path, "w", {aid(0): [sid(0, 0)]})
    args = run_args(plan, "w", tmp_path, "--not-before", "23:00", "--not-after", "22:00")
    out = mgn_cutover(plain(args), cli_env(NOWHERE))
    assert out.returncode == 2
    assert out.stderr.startswith("--not-after: not_after: the cutover window ends (")
    assert "from --not-before" in out.stderr and len(out.stderr.splitlines()) == 1
    out = mgn_cutover(
        plain(run_args(plan, "w", tmp_path, "--timezone", "Mars/Base")), cli_env(NOWHERE)
    )
    assert out.returncode == 2
    assert out.stderr == (
        "--timezone: expected an IANA time zone name, like UTC or Europe/Paris, got the string "
        '"Mars/Base"\n'
    )
    assert not (tmp_path / "state").exists()


def test_webhook_token_never_reaches_the_terminal(tmp_path: Path) -> None:
    """A refused notify_webhook_url is named, its value (and token) never printed."""
    plan = write_plan(tmp_path, "w", {aid(0): [sid(0, 0)]})
    url = "http://hooks.example.com/notify?token=tok3nSECRET"
    out = mgn_cutover(
        ["validate", str(plan)], cli_env(NOWHERE, {"MGN_CUTOVER_NOTIFY_WEBHOOK_URL": url})
    )
    assert out.returncode == 2
    assert out.stderr.startswith("env MGN_CUTOVER_NOTIFY_WEBHOOK_URL: http:// is allowed only")
    assert "tok3nSECRET" not in out.stderr + out.stdout and "hooks.example" not in out.stderr
