"""`mgn-cutover plan` and `export-plan` as subprocesses against the emulator (and moto's EC2)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import boto3
import pytest

from tests.runhelp import aid, cli_env, mgn_cutover, server, sid, write_plan

pytestmark = pytest.mark.usefixtures("fake_credentials")

MUTATING = ("FinalizeCutover", "StartCutover", "ChangeServerLifeCycleState", "MarkAsArchived")


def _plan_json(plan: Path, wave: str, env: dict[str, str], *extra: str) -> tuple[int, Any]:
    out = mgn_cutover(["plan", str(plan), "--wave", wave, "--output", "json", *extra], env)
    assert "Traceback" not in out.stderr
    return out.returncode, json.loads(out.stdout) if out.stdout.strip() else None


def test_every_decision_with_its_reason(emulator: Any, work_dir: Path) -> None:
    """Each pre-flight rule gives its decision and reason; nothing mutating is sent; exit 1."""
    a = [aid(i) for i in range(8)]
    emulator.seed(
        {
            "servers": [
                server(sid(0, 0), a[0]),
                server(sid(1, 0), a[1], "CUTOVER"),
                server(sid(2, 0), a[2], archived=True),
                server(sid(3, 0), a[7]),
                server(sid(4, 0), a[4], "READY_FOR_TEST"),
                server(sid(5, 0), a[5], firstBoot="WAITING"),
                server(sid(6, 0), a[6]),
                server(sid(6, 1), a[6], firstBoot="STOPPED"),
            ]
        }
    )
    groups = {
        a[0]: [sid(0, 0)],
        a[1]: [sid(1, 0)],
        a[2]: [sid(2, 0)],
        a[3]: [sid(3, 0)],
        a[4]: [sid(4, 0)],
        a[5]: [sid(5, 0)],
        a[6]: [sid(6, 0), sid(6, 1)],
        a[7]: [sid(7, 0)],
    }
    plan = write_plan(work_dir, "p", groups)
    code, doc = _plan_json(plan, "p", cli_env(emulator.url))
    assert code == 1
    got = {s["sourceServerID"]: (s["decision"], s["reason"] or "") for s in doc["servers"]}
    assert got[sid(0, 0)] == ("finalize", "")
    assert got[sid(1, 0)] == ("already_cutover", "")
    expected_blocked = {
        sid(2, 0): "archived",
        sid(3, 0): f"application_mismatch: MGN has it in {a[7]}",
        sid(4, 0): "wrong_state: READY_FOR_TEST",
        sid(5, 0): "first_boot: WAITING",
        sid(6, 0): f"application_gate: {sid(6, 1)} first_boot: STOPPED",
        sid(6, 1): "first_boot: STOPPED",
        sid(7, 0): "not_found",
    }
    for server_id, reason in expected_blocked.items():
        decision, got_reason = got[server_id]
        assert decision == "blocked", server_id
        assert got_reason.startswith(reason), (server_id, got_reason)
    assert doc["counts"] == {"total": 9, "finalize": 1, "already_cutover": 1, "blocked": 7}
    # Blocked applications come first.
    decisions = [s["decision"] for s in doc["servers"]]
    assert decisions.index("finalize") > max(i for i, d in enumerate(decisions) if d == "blocked")
    assert all(emulator.calls(op) == 0 for op in MUTATING)


def test_table_output_and_exit_zero_when_nothing_is_blocked(emulator: Any, work_dir: Path) -> None:
    """A ready wave plans with exit 0 and a table that ends with the counts."""
    groups = {aid(0): [sid(0, 0), sid(0, 1)], aid(1): [sid(1, 0)]}
    emulator.seed({"servers": [server(s, a) for a, ids in groups.items() for s in ids]})
    plan = write_plan(work_dir, "ok", groups)
    out = mgn_cutover(["plan", str(plan), "--wave", "ok"], cli_env(emulator.url))
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert lines[0].split() == ["SERVER", "NAME", "APPLICATION", "DECISION", "REASON"]
    assert lines[-1] == "3 servers: 3 finalize, 0 already_cutover, 0 blocked"


def test_reads_are_batched_200_ids_per_call(emulator: Any, work_dir: Path) -> None:
    """1,000 servers are pre-flighted with ceil(1000/200) = 5 DescribeSourceServers calls of
    200 IDs each (issue 21: no smaller first pages)."""
    groups = {aid(a): [sid(a, n) for n in range(10)] for a in range(100)}
    emulator.seed({"servers": [server(s, a) for a, ids in groups.items() for s in ids]})
    plan = write_plan(work_dir, "big", groups)
    code, doc = _plan_json(plan, "big", cli_env(emulator.url), "--describe-rate", "100")
    assert code == 0
    assert doc["counts"]["finalize"] == 1000
    assert emulator.calls("DescribeSourceServers") == 5
    sizes = [len(e["servers"]) for e in emulator.request_log()]
    assert sizes == [200] * 5


@pytest.mark.parametrize(
    ("mode", "code_name"),
    [("uninitialized", "UninitializedAccountException"), ("access_denied", "AccessDenied")],
)
def test_account_errors_exit_4_with_one_line(
    emulator: Any, work_dir: Path, mode: str, code_name: str
) -> None:
    """Account-wide errors exit 4 with a one-line reason and no traceback."""
    plan = write_plan(work_dir, "acct", {aid(0): [sid(0, 0)]})
    emulator.set_faults(**{mode: True})
    out = mgn_cutover(["plan", str(plan), "--wave", "acct"], cli_env(emulator.url))
    assert out.returncode == 4
    assert "Traceback" not in out.stderr
    errors = [line for line in out.stderr.splitlines() if line.startswith("mgn-cutover:")]
    assert len(errors) == 1 and code_name in errors[0]


def test_missing_credentials_exit_4(emulator: Any, work_dir: Path) -> None:
    """With no credentials anywhere, plan exits 4 saying so, not a traceback."""
    plan = write_plan(work_dir, "nocreds", {aid(0): [sid(0, 0)]})
    env = cli_env(emulator.url)
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        env.pop(key, None)
    out = mgn_cutover(["plan", str(plan), "--wave", "nocreds"], env)
    assert out.returncode == 4, out.stderr
    assert "Traceback" not in out.stderr
    assert "credentials" in out.stderr.lower()


def test_verify_instances_checks_ec2_in_moto(emulator: Any, moto_url: str, work_dir: Path) -> None:
    """--verify-instances blocks servers whose cutover instance is stopped or unknown to EC2."""
    ec2 = boto3.client("ec2", endpoint_url=moto_url, region_name="us-east-1")
    made = ec2.run_instances(ImageId="ami-12c6146b", MinCount=2, MaxCount=2)
    running, stopped = (i["InstanceId"] for i in made["Instances"])
    ec2.stop_instances(InstanceIds=[stopped])
    ghost = "i-0123456789abcdef0"
    apps = [aid(0), aid(1), aid(2)]
    emulator.seed(
        {
            "servers": [
                server(sid(0, 0), apps[0], ec2InstanceID=running),
                server(sid(1, 0), apps[1], ec2InstanceID=stopped),
                server(sid(2, 0), apps[2], ec2InstanceID=ghost),
            ]
        }
    )
    plan = write_plan(work_dir, "ec2", {a: [sid(i, 0)] for i, a in enumerate(apps)})
    env = cli_env(emulator.url, {"AWS_ENDPOINT_URL_EC2": moto_url})
    code, doc = _plan_json(plan, "ec2", env, "--verify-instances")
    assert code == 1
    got = {s["sourceServerID"]: (s["decision"], s["reason"] or "") for s in doc["servers"]}
    assert got[sid(0, 0)] == ("finalize", "")
    assert got[sid(1, 0)][0] == "blocked"
    assert got[sid(1, 0)][1].startswith(f"instance_unhealthy: {stopped} state=stopped")
    assert got[sid(2, 0)] == ("blocked", f"instance_unhealthy: EC2 does not know {ghost}")
    code, doc = _plan_json(plan, "ec2", env)  # off by default: EC2 is not asked
    assert code == 0


def test_export_plan_round_trips_through_validate(emulator: Any, work_dir: Path) -> None:
    """export-plan writes MGN's wave as a plan file that validate accepts, with every server."""
    wave_id = "wave-00000000000000001"
    apps = [aid(0), aid(1)]
    emulator.seed(
        {
            "servers": [server(sid(0, n), apps[0]) for n in range(3)]
            + [server(sid(1, n), apps[1]) for n in range(2)]
            + [server(sid(2, 0), aid(2))],
            "waves": [{"waveID": wave_id, "name": "Payments wave", "applicationIDs": apps}],
            "applications": [
                {"applicationID": apps[0], "name": "pay-api", "waveID": wave_id},
                {"applicationID": apps[1], "name": "pay-db", "waveID": wave_id},
            ],
        }
    )
    env = cli_env(emulator.url)
    out = mgn_cutover(["export-plan", "--mgn-wave", "Payments wave"], env)
    assert out.returncode == 0, out.stderr
    path = work_dir / "exported.yaml"
    path.write_text(out.stdout)
    check = mgn_cutover(["validate", str(path)], env)
    assert check.returncode == 0, check.stderr
    import yaml

    doc = yaml.safe_load(out.stdout)
    assert doc["wave"] == "Payments-wave"
    assert {a["applicationID"]: sorted(a["sourceServerIDs"]) for a in doc["applications"]} == {
        apps[0]: [sid(0, n) for n in range(3)],
        apps[1]: [sid(1, n) for n in range(2)],
    }
    missing = mgn_cutover(["export-plan", "--mgn-wave", "nope"], env)
    assert missing.returncode == 2
    assert "Payments wave" in missing.stderr
