"""A transient error at start is retried like any other (issue 21, point 6, the start half).

Subprocess runs of `run`, `plan`, `import` and `export-plan` against the emulator over HTTP,
with its `fail_first` fault answering an operation's first calls 500 InternalServerException.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests import test_import as imported
from tests.runhelp import cli_env, mgn_cutover, outcomes, report, run_args
from tests.test_accounts import ACCT_A, ACCT_B, TWO, seed_accounts, write_wave

pytestmark = pytest.mark.usefixtures("fake_credentials")


def _two_accounts(emulator: Any, work: Path, wave: str = "multi") -> Path:
    """TWO's six servers, ready for finalize, each in its own account; the plan of them."""
    seed_accounts(emulator, TWO)
    return write_wave(work, wave, TWO)


def test_one_500_on_list_managed_accounts_is_retried_and_the_night_runs(
    emulator: Any, work_dir: Path
) -> None:
    """A plan naming accountIDs, the first ListManagedAccounts answered 500: it is retried and
    every server of both accounts is finalized (exit 0), not `refused exit=1`."""
    plan = _two_accounts(emulator, work_dir)
    emulator.set_faults(fail_first={"ListManagedAccounts": 1})
    out = mgn_cutover(run_args(plan, "multi", work_dir), cli_env(emulator.url))
    assert out.returncode == 0, out.stdout + out.stderr[-3000:]
    assert set(outcomes(report(work_dir, "multi")).values()) == {"finalized"}
    assert emulator.calls("ListManagedAccounts") == 2
    assert emulator.failed("ListManagedAccounts") == 1


def test_plan_retries_list_managed_accounts_too(emulator: Any, work_dir: Path) -> None:
    """`plan` of a multi-account wave survives one ListManagedAccounts 500 (exit 0)."""
    plan = _two_accounts(emulator, work_dir)
    emulator.set_faults(fail_first={"ListManagedAccounts": 1})
    out = mgn_cutover(["plan", str(plan), "--wave", "multi"], cli_env(emulator.url))
    assert out.returncode == 0, out.stdout + out.stderr[-3000:]
    assert "6 servers: 6 finalize, 0 already_cutover, 0 blocked" in out.stdout


def test_one_500_on_the_first_describe_is_retried(emulator: Any, work_dir: Path) -> None:
    """The pre-flight's first DescribeSourceServers answered 500 once: retried, every server
    finalized (a guard: this already held before issue 21)."""
    plan = _two_accounts(emulator, work_dir)
    emulator.set_faults(fail_first={"DescribeSourceServers": 1})
    out = mgn_cutover(run_args(plan, "multi", work_dir), cli_env(emulator.url))
    assert out.returncode == 0, out.stdout + out.stderr[-3000:]
    assert set(outcomes(report(work_dir, "multi")).values()) == {"finalized"}
    assert emulator.failed("DescribeSourceServers") == 1


@pytest.mark.parametrize(
    "operation", ["ListApplications", "DescribeSourceServers", "ListManagedAccounts"]
)
def test_import_retries_each_name_resolution_read(
    emulator: Any, tmp_path: Path, operation: str
) -> None:
    """`import` with one 500 on a read it resolves names with: retried, the plans written
    (exit 0), not exit 1 on the first 5xx."""
    emulator.seed(imported.FIXTURE)
    csv = imported.write(tmp_path, imported.GOOD)
    emulator.set_faults(fail_first={operation: 1})
    out_dir = tmp_path / "waves"
    result = mgn_cutover(["import", str(csv), "--out", str(out_dir)], cli_env(emulator.url))
    assert result.returncode == 0, result.stderr[-3000:]
    assert sorted(p.name for p in out_dir.iterdir()) == ["HR-wave.yaml", "Payments-wave.yaml"]
    assert emulator.failed(operation) == 1


def _mgn_wave(emulator: Any) -> None:
    """TWO's servers in MGN wave "Payments wave" in each of the two accounts."""
    emulator.seed(
        {
            "servers": [
                {"sourceServerID": s, "applicationID": app, "accountID": acct}
                for app, (acct, ids) in TWO.items()
                for s in ids
            ],
            "applications": [
                {"applicationID": app, "name": f"app-{acct}", "waveID": f"wave-{acct}00000"}
                | {"accountID": acct}
                for app, (acct, _) in TWO.items()
            ],
            "waves": [
                {"waveID": f"wave-{acct}00000", "name": "Payments wave", "accountID": acct}
                for acct, _ in TWO.values()
            ],
        }
    )


@pytest.mark.parametrize("operation", ["ListManagedAccounts", "ListWaves", "ListApplications"])
def test_export_plan_all_accounts_retries_its_reads(emulator: Any, operation: str) -> None:
    """`export-plan --all-accounts` with one 500 on a read: retried, the plan printed."""
    _mgn_wave(emulator)
    emulator.set_faults(fail_first={operation: 1})
    args = ["export-plan", "--mgn-wave", "Payments wave", "--all-accounts"]
    out = mgn_cutover([*args, "--regions", "us-east-1"], cli_env(emulator.url))
    assert out.returncode == 0, out.stderr[-3000:]
    assert ACCT_A in out.stdout and ACCT_B in out.stdout
    assert emulator.failed(operation) == 1


def test_export_plan_of_one_account_retries_its_reads(emulator: Any) -> None:
    """`export-plan` in the caller's account with one 500 on ListWaves: retried, exit 0."""
    _mgn_wave(emulator)
    emulator.set_faults(fail_first={"ListWaves": 1})
    args = ["export-plan", "--mgn-wave", "Payments wave", "--account-id", ACCT_A]
    out = mgn_cutover(args, cli_env(emulator.url))
    assert out.returncode == 0, out.stderr[-3000:]
    assert all(s in out.stdout for s in TWO[next(iter(TWO))][1])
    assert emulator.failed("ListWaves") == 1


def test_exhausted_retries_stop_only_that_account_with_a_report(
    emulator: Any, work_dir: Path
) -> None:
    """One account's DescribeSourceServers keeps failing: after --max-attempts its servers are
    blocked (`retries_exhausted`, never sent), the other account's are finalized, the report
    names both, exit 1 (not 4: no account-wide error)."""
    plan = _two_accounts(emulator, work_dir)
    emulator.set_faults(fail_first={f"DescribeSourceServers@{ACCT_B}": 1000})
    args = run_args(plan, "multi", work_dir, "--max-attempts", "2")
    out = mgn_cutover(args, cli_env(emulator.url))
    assert out.returncode == 1, out.stdout + out.stderr[-3000:]
    rows = {r["sourceServerID"]: r for r in report(work_dir, "multi")["servers"]}
    (acct_a, ids_a), (acct_b, ids_b) = TWO.values()
    assert (acct_a, acct_b) == (ACCT_A, ACCT_B)
    assert {rows[s]["outcome"] for s in ids_a} == {"finalized"}
    assert {rows[s]["outcome"] for s in ids_b} == {"blocked"}
    assert all(str(rows[s]["reason"]).startswith("retries_exhausted") for s in ids_b)
    assert all(emulator.calls_for(s, "FinalizeCutover") == 0 for s in ids_b)
    assert '"target_preflight_failed"' in out.stderr
