"""Many accounts in one wave: reached by global view, assumed role or profile, each with its own
client and limiters; a target that cannot be reached blocks only its own applications."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from orchestrator.config import load_config
from orchestrator.errors import AccountError, ConfigError
from orchestrator.mgn import ClientSettings, MgnClient
from tests.runhelp import aid, cli_env, mgn_cutover, report, run_args, server, sid

ACCT_A, ACCT_B, ACCT_C = "222222222222", "333333333333", "444444444444"


def write_wave(folder: Path, name: str, apps: dict[str, tuple[str, list[str]]]) -> Path:
    """A plan with each application's own accountID (apps: id -> (account, servers))."""
    doc = {
        "wave": name,
        "region": "us-east-1",
        "applications": [
            {"applicationID": app, "accountID": acct, "sourceServerIDs": ids}
            for app, (acct, ids) in apps.items()
        ],
    }
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def seed_accounts(emulator: Any, apps: dict[str, tuple[str, list[str]]]) -> None:
    emulator.seed(
        {
            "servers": [
                server(s, app, accountID=acct) for app, (acct, ids) in apps.items() for s in ids
            ]
        }
    )


def seed_launchable(emulator: Any, apps: dict[str, tuple[str, list[str]]]) -> None:
    """Seed each application's servers READY_FOR_CUTOVER in its account, for `run --launch`."""
    emulator.seed(
        {
            "servers": [
                {
                    "sourceServerID": s,
                    "applicationID": app,
                    "accountID": acct,
                    "state": "READY_FOR_CUTOVER",
                    "lagDuration": "PT5S",
                }
                for app, (acct, ids) in apps.items()
                for s in ids
            ]
        }
    )


TWO = {
    aid(1): (ACCT_A, [sid(1, n) for n in range(3)]),
    aid(2): (ACCT_B, [sid(2, n) for n in range(3)]),
}


def test_account_profiles_from_file_and_environment(tmp_path: Path) -> None:
    """account_profiles reads a mapping from the file and ID=profile pairs from the env."""
    path = tmp_path / "c.yaml"
    path.write_text(f'account_access: profiles\naccount_profiles: {{"{ACCT_A}": prod-a}}\n')
    assert load_config(path, {}, {}).account_profiles == ((ACCT_A, "prod-a"),)
    env = {"MGN_CUTOVER_ACCOUNT_PROFILES": f"{ACCT_B}=b, {ACCT_A}=a"}
    assert load_config(None, env, {}).account_profiles == ((ACCT_A, "a"), (ACCT_B, "b"))


def test_bad_account_settings_are_refused_and_external_id_never_echoed(tmp_path: Path) -> None:
    """An unquoted account key, a role ARN that is not one, a bad ExternalId: all at once,
    the ExternalId's value never repeated."""
    path = tmp_path / "c.yaml"
    path.write_text(
        "account_profiles: {222222222222: a}\nrole_arn: arn:aws:iam::x:user/u\n"
        "external_id: 'sec ret!'\n"
    )
    with pytest.raises(ConfigError) as info:
        load_config(path, {}, {})
    lines = [str(d) for d in info.value.diagnostics]
    assert [line.split(": ")[1] for line in lines] == [
        "account_profiles",
        "role_arn",
        "external_id",
    ]
    assert "quote account 222222222222" in lines[0]
    assert "sec ret" not in str(info.value)
    good = tmp_path / "g.yaml"
    good.write_text("external_id: s3cr3t-ext\n")
    assert load_config(good, {}, {}).as_report_dict()["external_id"] == "<set>"


def test_validate_refuses_an_account_no_profile_covers(tmp_path: Path) -> None:
    """With account_access profiles, a plan account without a profile is refused at its line."""
    plan = write_wave(tmp_path, "w", TWO)
    config = tmp_path / "c.yaml"
    config.write_text(f'account_access: profiles\naccount_profiles: {{"{ACCT_A}": a}}\n')
    out = mgn_cutover(["validate", str(plan), "--config", str(config)], cli_env("http://x"))
    assert out.returncode == 2
    assert out.stderr.strip() == (
        f"{plan}:11:14: accountID {ACCT_B}: account_access profiles: account_profiles has no "
        f"profile for {ACCT_B} (account_access from {config}:1:17)"
    )


def test_global_view_finalizes_each_server_in_its_own_account(
    emulator: Any, work_dir: Path
) -> None:
    """One wave, two accounts: every call carries its server's accountID; the report says which."""
    seed_accounts(emulator, TWO)
    plan = write_wave(work_dir, "multi", TWO)
    out = mgn_cutover(run_args(plan, "multi", work_dir), cli_env(emulator.url))
    assert out.returncode == 0, out.stderr[-3000:]
    for app, (acct, ids) in TWO.items():
        for s in ids:
            assert emulator.server(s, acct)["lifeCycle"]["state"] == "CUTOVER", (app, s)
    rows = report(work_dir, "multi")["servers"]
    assert {(r["sourceServerID"], r["accountID"], r["region"]) for r in rows} == {
        (s, acct, "us-east-1") for acct, ids in TWO.values() for s in ids
    }
    assert emulator.calls("ListManagedAccounts") == 1
    dirs = ["--state-dir", str(work_dir / "state")]
    status = mgn_cutover(["status", "--wave", "multi", *dirs], cli_env(emulator.url))
    assert status.returncode == 0, status.stderr[-3000:]
    lines = [line.split() for line in status.stdout.splitlines()]
    header = next(line for line in lines if line and line[0] == "SERVER")
    account, state = header.index("ACCOUNT"), header.index("MGN_STATE")
    rows = [line for line in lines if line and line[0].startswith("s-")]
    assert {(row[0], row[state], row[account]) for row in rows} == {
        (s, "CUTOVER", acct) for acct, ids in TWO.values() for s in ids
    }  # each server read back in its own account


def test_an_unmanaged_account_blocks_only_its_applications(emulator: Any, work_dir: Path) -> None:
    """An account ListManagedAccounts does not list: its servers blocked with the reason, the
    other account's finalized; exit 1."""
    seed_accounts(emulator, TWO)
    apps = {**TWO, aid(3): (ACCT_C, [sid(3, 0)])}  # nothing seeded there: not managed
    plan = write_wave(work_dir, "part", apps)
    out = mgn_cutover(run_args(plan, "part", work_dir), cli_env(emulator.url))
    assert out.returncode == 1, out.stderr[-3000:]
    rows = {r["sourceServerID"]: r for r in report(work_dir, "part")["servers"]}
    assert rows[sid(3, 0)]["outcome"] == "blocked"
    assert f"account {ACCT_C} is not among the accounts ListManagedAccounts" in str(
        rows[sid(3, 0)]["reason"]
    )
    assert {rows[s]["outcome"] for _, ids in TWO.values() for s in ids} == {"finalized"}
    assert emulator.calls_for(sid(3, 0), "FinalizeCutover") == 0


def test_no_reachable_account_exits_4(emulator: Any, work_dir: Path) -> None:
    """When the caller is a member account (no global view), every account refuses its reads:
    exit 4, nothing finalized."""
    seed_accounts(emulator, TWO)
    emulator.identify("AKIAMEMBERACCOUNT001", ACCT_C)
    plan = write_wave(work_dir, "none", TWO)
    env = cli_env(emulator.url, {"AWS_ACCESS_KEY_ID": "AKIAMEMBERACCOUNT001"})
    out = mgn_cutover(run_args(plan, "none", work_dir), env)
    assert out.returncode == 4, out.stderr[-3000:]
    assert emulator.calls("FinalizeCutover") == 0
    assert "AccessDeniedException" in out.stderr


def test_a_member_account_sees_only_itself(emulator: Any, make_mgn_client: Any) -> None:
    """Keys of a member account read its own servers without accountID, and are denied
    another account's (AccessDeniedException), as AWS attributes calls by credentials."""
    seed_accounts(emulator, TWO)
    emulator.identify("AKIAFAKETESTKEY00001", ACCT_A)  # the fake_credentials key
    client = make_mgn_client(emulator.url)
    mine = client.describe_source_servers(filters={})["items"]
    assert {s["sourceServerID"] for s in mine} == set(TWO[aid(1)][1])
    with pytest.raises(client.exceptions.AccessDeniedException):
        client.describe_source_servers(filters={}, accountID=ACCT_B)
    with pytest.raises(client.exceptions.AccessDeniedException):
        client.list_managed_accounts()


async def test_managed_accounts_is_read_and_refused_as_botocore_would(
    emulator: Any, fake_credentials: dict[str, str]
) -> None:
    """ListManagedAccounts (a lean call): the accounts listed; a member account's refusal is
    the same AccountError a botocore call would raise."""
    seed_accounts(emulator, TWO)
    settings = ClientSettings(region="us-east-1", endpoint_url=emulator.url)
    async with MgnClient(settings) as client:
        assert {ACCT_A, ACCT_B} <= await client.managed_accounts()
        emulator.identify(fake_credentials["AWS_ACCESS_KEY_ID"], ACCT_A)  # now a member
        with pytest.raises(AccountError) as refused:
            await client.managed_accounts()
    assert refused.value.code == "AccessDeniedException"
    assert emulator.calls("ListManagedAccounts") == 2


def test_assume_role_runs_each_account_with_its_own_role(
    emulator: Any, work_dir: Path, moto_url: str
) -> None:
    """assume-role through moto's STS: no accountID is sent, the emulator attributes each call
    to the role's account, every server is finalized in its own account."""
    seed_accounts(emulator, TWO)
    plan = write_wave(work_dir, "roles", TWO)
    config = work_dir / "c.yaml"
    config.write_text(
        "account_access: assume-role\nrole_arn: arn:aws:iam::{accountID}:role/MGNCutover\n"
        "external_id: ext-id-1\n"
    )
    env = cli_env(emulator.url, {"AWS_ENDPOINT_URL_STS": moto_url})
    out = mgn_cutover([*run_args(plan, "roles", work_dir), "--config", str(config)], env)
    assert out.returncode == 0, out.stderr[-3000:]
    for acct, ids in TWO.values():
        assert {emulator.server(s, acct)["lifeCycle"]["state"] for s in ids} == {"CUTOVER"}
    log = emulator.request_log()
    assert log and all(entry["accountID"] is None for entry in log)  # no global view used
    from moto.sts.models import sts_backends

    roles = [
        role
        for regions in sts_backends.values()
        for backend in regions.values()
        for role in backend.assumed_roles
    ]
    assert {(r.role_arn, r.session_name, r.external_id) for r in roles} == {
        (f"arn:aws:iam::{acct}:role/MGNCutover", "mgn-cutover-roles", "ext-id-1")
        for acct in (ACCT_A, ACCT_B)
    }


def test_a_role_that_cannot_be_assumed_blocks_its_account_exit_4(
    emulator: Any, work_dir: Path
) -> None:
    """STS unreachable: every AssumeRole fails, so no account can run: exit 4, the role named."""
    seed_accounts(emulator, TWO)
    plan = write_wave(work_dir, "nosts", TWO)
    config = work_dir / "c.yaml"
    config.write_text("account_access: assume-role\nrole_arn: arn:aws:iam::{accountID}:role/R\n")
    env = cli_env(emulator.url, {"AWS_ENDPOINT_URL_STS": "http://127.0.0.1:9"})
    out = mgn_cutover([*run_args(plan, "nosts", work_dir), "--config", str(config)], env)
    assert out.returncode == 4, out.stderr[-3000:]
    assert f"AssumeRole arn:aws:iam::{ACCT_A}:role/R failed" in out.stderr
    assert emulator.calls("DescribeSourceServers") == 0


def test_export_plan_all_accounts_walks_the_managed_accounts(emulator: Any, work_dir: Path) -> None:
    """One MGN wave name in two accounts: one plan, each application with its own accountID."""
    seed = {
        "servers": [
            server(s, app, accountID=acct) for app, (acct, ids) in TWO.items() for s in ids
        ],
        "applications": [
            {
                "applicationID": app,
                "name": f"app-{acct}",
                "waveID": f"wave-{acct}00000",
                "accountID": acct,
            }
            for app, (acct, _) in TWO.items()
        ],
        "waves": [
            {"waveID": f"wave-{acct}00000", "name": "Payments wave", "accountID": acct}
            for acct, _ in TWO.values()
        ],
    }
    emulator.seed(seed)
    args = [
        "export-plan",
        "--mgn-wave",
        "Payments wave",
        "--all-accounts",
        "--regions",
        "us-east-1",
    ]
    out = mgn_cutover(args, cli_env(emulator.url))
    assert out.returncode == 0, out.stderr[-3000:]
    plan = work_dir / "p.yaml"
    plan.write_text(out.stdout)
    from orchestrator.plan import Target, load_waves

    (wave,) = load_waves([plan]).waves
    assert wave.name == "Payments-wave"
    assert {(a.application_id, wave.target_of(a), a.server_ids) for a in wave.applications} == {
        (app, Target(acct, "us-east-1"), tuple(ids)) for app, (acct, ids) in TWO.items()
    }


def test_emulator_quotas_are_per_account(emulator: Any, make_mgn_client: Any) -> None:
    """A quota of 1/s lets one call through per account: MGN's quotas are per account."""
    seed_accounts(emulator, TWO)
    emulator.set_faults(quota_per_s={"DescribeSourceServers": 1})
    client = make_mgn_client(emulator.url)
    client.describe_source_servers(filters={}, accountID=ACCT_A)
    client.describe_source_servers(filters={}, accountID=ACCT_B)  # its own bucket
    with pytest.raises(client.exceptions.ThrottlingException):
        client.describe_source_servers(filters={}, accountID=ACCT_A)


def test_each_target_has_its_own_client_and_limiters(
    emulator: Any, work_dir: Path, fake_credentials: dict[str, str]
) -> None:
    """Targets opens one gateway per (account, region): servers of one account share a finalize
    limiter, servers of two accounts do not; the pool is handed each server's own."""
    import asyncio

    from orchestrator.plan import load_waves
    from orchestrator.targets import Targets

    seed_accounts(emulator, TWO)
    (wave,) = load_waves([write_wave(work_dir, "t", TWO)]).waves
    config = load_config(None, {"MGN_CUTOVER_ENDPOINT_URL": emulator.url}, {})
    a1, a2, b1 = sid(1, 0), sid(1, 1), sid(2, 0)

    async def check() -> None:
        async with Targets(wave, config) as targets:
            assert len(targets.gateways) == 2 and not targets.blocked
            assert targets.writes(a1).limiter is targets.writes(a2).limiter
            assert targets.writes(a1).limiter is not targets.writes(b1).limiter
            assert targets.gateway_of(a1).client is not targets.gateway_of(b1).client
            views = await targets.read([a1, b1])
            assert set(views) == {a1, b1}

    asyncio.run(check())


def test_an_account_refusing_its_reads_blocks_only_itself(emulator: Any, work_dir: Path) -> None:
    """A member account's caller: its own account runs, the other account (AccessDenied on its
    reads) is blocked with the reason and never sent anything; exit 1."""
    seed_accounts(emulator, TWO)
    emulator.identify("AKIAMEMBERACCOUNT002", ACCT_A)
    plan = write_wave(work_dir, "half", TWO)
    env = cli_env(emulator.url, {"AWS_ACCESS_KEY_ID": "AKIAMEMBERACCOUNT002"})
    out = mgn_cutover(run_args(plan, "half", work_dir), env)
    assert out.returncode == 1, out.stderr[-3000:]
    rows = {r["sourceServerID"]: r for r in report(work_dir, "half")["servers"]}
    assert {rows[s]["outcome"] for s in TWO[aid(1)][1]} == {"finalized"}
    for s in TWO[aid(2)][1]:
        assert rows[s]["outcome"] == "blocked"
        assert "AccessDeniedException" in str(rows[s]["reason"])
        assert emulator.calls_for(s, "FinalizeCutover") == 0


def test_plan_reads_each_account_and_sends_nothing(emulator: Any, work_dir: Path) -> None:
    """`plan` over two accounts: every server read in its own account, all would finalize."""
    import json

    seed_accounts(emulator, TWO)
    plan = write_wave(work_dir, "p2", TWO)
    out = mgn_cutover(
        ["plan", str(plan), "--wave", "p2", "--output", "json"], cli_env(emulator.url)
    )
    assert out.returncode == 0, out.stderr[-3000:]
    doc = json.loads(out.stdout)
    assert doc["counts"] == {"total": 6, "finalize": 6, "already_cutover": 0, "blocked": 0}
    assert emulator.calls("FinalizeCutover") == 0


def test_an_account_whose_credentials_expire_mid_run_stops_alone(
    emulator: Any, work_dir: Path
) -> None:
    """Account B's calls are denied after its first FinalizeCutover: nothing more is sent to B,
    its servers are reported with the account error, account A is finalized to the end; exit 4
    and report.json names B."""
    apps = {
        aid(1): (ACCT_A, [sid(1, n) for n in range(4)]),
        aid(2): (ACCT_B, [sid(2, n) for n in range(4)]),
    }
    seed_accounts(emulator, apps)
    emulator.set_faults(denied_after={ACCT_B: 2})  # its pre-flight read and one finalize
    plan = write_wave(work_dir, "expiry", apps)
    args = run_args(plan, "expiry", work_dir, "--concurrency", "1")
    out = mgn_cutover(args, cli_env(emulator.url))
    assert out.returncode == 4, out.stderr[-3000:]
    rep = report(work_dir, "expiry")
    rows = {r["sourceServerID"]: r for r in rep["servers"]}
    for s in apps[aid(1)][1]:
        assert rows[s]["outcome"] == "finalized", rows[s]
        assert emulator.server(s, ACCT_A)["lifeCycle"]["state"] == "CUTOVER"
    b_ids = apps[aid(2)][1]
    sent_b = [s for s in b_ids if emulator.calls_for(s, "FinalizeCutover")]
    assert len(sent_b) == 2  # the one answered, the one denied; nothing after the denial
    cut_over = [s for s in b_ids if emulator.server(s, ACCT_B)["lifeCycle"]["state"] == "CUTOVER"]
    assert len(cut_over) == 1
    # The one MGN answered 200 is finalized: that answer is the server record (CUTOVER +
    # DISCONNECTED); every other server of B says the account error stopped it.
    assert [rows[s]["outcome"] for s in cut_over] == ["finalized"]
    for s in b_ids:
        if s in cut_over:
            continue
        assert rows[s]["outcome"] != "finalized", rows[s]
        assert "account error" in str(rows[s]["reason"]), rows[s]
        assert "has expired (emulated)" in str(rows[s]["reason"]), rows[s]
    assert {rows[s]["outcome"] for s in b_ids if s not in cut_over} == {"not_attempted"}
    assert ACCT_B in str(rep["account_error"]) and ACCT_A not in str(rep["account_error"])
    assert "AccessDeniedException" in str(rep["account_error"])
    denied_at = min(
        e["t"] for e in emulator.request_log() if e["accountID"] == ACCT_B and e["status"] == 403
    )
    later_b = [e for e in emulator.request_log() if e["accountID"] == ACCT_B and e["t"] > denied_at]
    assert all(e["op"] != "FinalizeCutover" for e in later_b)


def test_an_account_denied_from_the_start_of_a_night_blocks_only_its_applications(
    emulator: Any, work_dir: Path
) -> None:
    """`run --launch`: account B's first call (its DescribeJobs) is denied. B's servers are
    blocked with the account error, never launched nor finalized; account A's night runs to
    the end; exit 4."""
    apps = {
        aid(1): (ACCT_A, [sid(1, n) for n in range(3)]),
        aid(2): (ACCT_B, [sid(2, n) for n in range(3)]),
    }
    seed_launchable(emulator, apps)
    emulator.set_faults(
        time_scale=2000.0, launch_s=(60.0, 120.0), boot_s=(30.0, 60.0), post_launch_actions=(),
        denied_after={ACCT_B: 0},
    )  # fmt: skip
    plan = write_wave(work_dir, "denied", apps)
    args = run_args(plan, "denied", work_dir, "--launch", "--poll-interval", "0.05")
    out = mgn_cutover([*args, "--timeout", "20"], cli_env(emulator.url))
    assert out.returncode == 4, out.stderr[-3000:]
    rows = {r["sourceServerID"]: r for r in report(work_dir, "denied")["servers"]}
    for s in apps[aid(1)][1]:
        assert rows[s]["outcome"] == "finalized", rows[s]
    for s in apps[aid(2)][1]:
        assert rows[s]["outcome"] == "blocked", rows[s]
        reason = str(rows[s]["reason"])
        assert reason.startswith(f"account_access: {ACCT_B}/us-east-1: account error: "), reason
        assert "AccessDeniedException" in reason and "TargetStopped" not in reason, reason
        assert emulator.server(s, ACCT_B)["lifeCycle"]["state"] == "READY_FOR_CUTOVER"
    assert set(emulator.launches(ACCT_A)) == set(apps[aid(1)][1])
    assert max(emulator.launches(ACCT_A).values()) == 1
    assert not emulator.launches(ACCT_B)


# Imported by aioboto3 alone: ~0.2 s of a run's ~0.6 s start.
ASYNC_AWS = frozenset({"aiohttp", "aiobotocore", "aioboto3", "boto3"})


def imported(stderr: str) -> set[str]:
    """The modules a process imported, from its `-X importtime` lines on stderr."""
    prefix = "import time:"
    return {
        line.rsplit("|", 1)[1].strip() for line in stderr.splitlines() if line.startswith(prefix)
    }


def test_a_global_view_run_of_lean_calls_never_imports_aiobotocore(
    emulator: Any, work_dir: Path
) -> None:
    """A global-view wave that makes only lean calls (ListManagedAccounts, DescribeSourceServers
    by ID, FinalizeCutover) finalizes every server without importing aiohttp, aiobotocore,
    aioboto3 or boto3, as Python's own import log shows."""
    seed_accounts(emulator, TWO)
    plan = write_wave(work_dir, "lean", TWO)
    env = cli_env(emulator.url, {"PYTHONPROFILEIMPORTTIME": "1"})
    out = mgn_cutover(run_args(plan, "lean", work_dir), env)
    assert out.returncode == 0, out.stderr[-3000:]
    assert {r["outcome"] for r in report(work_dir, "lean")["servers"]} == {"finalized"}
    assert emulator.calls("ListManagedAccounts") == 1
    modules = imported(out.stderr)
    assert {"orchestrator.wire", "botocore.session"} <= modules  # the log is there
    assert not {name.partition(".")[0] for name in modules} & ASYNC_AWS


def test_a_launch_run_opens_aiobotocore_on_its_first_job_call(
    emulator: Any, work_dir: Path
) -> None:
    """`run --launch` (StartCutover, DescribeJobs: not lean) in global view: aiobotocore's
    client is made when the first of those calls needs it, and the night finalizes."""
    apps = {aid(1): (ACCT_A, [sid(1, n) for n in range(2)])}
    seed_launchable(emulator, apps)
    emulator.set_faults(
        time_scale=2000.0, launch_s=(60.0, 120.0), boot_s=(30.0, 60.0), post_launch_actions=()
    )
    plan = write_wave(work_dir, "launch", apps)
    args = run_args(plan, "launch", work_dir, "--launch", "--poll-interval", "0.05")
    env = cli_env(emulator.url, {"PYTHONPROFILEIMPORTTIME": "1"})
    out = mgn_cutover(args, env)
    assert out.returncode == 0, out.stderr[-3000:]
    assert {r["outcome"] for r in report(work_dir, "launch")["servers"]} == {"finalized"}
    assert emulator.calls("StartCutover") == 1
    assert {"aiobotocore", "aiohttp"} <= imported(out.stderr)
