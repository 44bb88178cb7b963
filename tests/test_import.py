"""`mgn-cutover import`: MGN's import CSV checked offline, names resolved through MGN, plans out."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.errors import InputError
from orchestrator.importfile import read_import_file
from orchestrator.plan import Target, load_waves
from tests.runhelp import cli_env, mgn_cutover

ACCT_A, ACCT_B = "222222222222", "333333333333"
APP_PAY, APP_HR = "app-000000000000000a1", "app-000000000000000b1"
S1, S2, S3, S4 = (f"s-00000000000000{n:03d}" for n in (1, 2, 3, 4))
HEADER = (
    "mgn:account-id,mgn:region,mgn:wave:name,mgn:app:name,mgn:server:user-provided-id,"
    "mgn:server:fqdn-for-action-framework,mgn:server:platform,mgn:server:tag:Owner,"
    "mgn:launch:instance-type\n"
)
GOOD = HEADER + (
    f"{ACCT_A},us-east-1,Payments wave,payments,CMDB-001,,LINUX,alice,m5.large\n"
    f"{ACCT_A},us-east-1,Payments wave,payments,,pay-db-01.corp.example.com,LINUX,alice,\n"
    f"{ACCT_B},eu-west-1,Payments wave,hr,hr-app-01,,LINUX,bob,\n"
    f"{ACCT_B},eu-west-1,HR wave,hr,hr-app-02,,LINUX,bob,\n"
)
FIXTURE = {
    "servers": [
        {
            "sourceServerID": S1,
            "applicationID": APP_PAY,
            "accountID": ACCT_A,
            "hostname": "pay-web-01",
            "userProvidedID": "CMDB-001",
        },
        {
            "sourceServerID": S2,
            "applicationID": APP_PAY,
            "accountID": ACCT_A,
            "hostname": "pay-db-01",
        },
        {
            "sourceServerID": S3,
            "applicationID": APP_HR,
            "accountID": ACCT_B,
            "hostname": "hr-app-01",
        },
        {
            "sourceServerID": S4,
            "applicationID": APP_HR,
            "accountID": ACCT_B,
            "hostname": "hr-app-02",
        },
    ],
    "applications": [
        {"applicationID": APP_PAY, "name": "payments", "accountID": ACCT_A},
        {"applicationID": APP_HR, "name": "hr", "accountID": ACCT_B},
    ],
}


def write(folder: Path, text: str | bytes, name: str = "import.csv") -> Path:
    path = folder / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def errors_of(path: Path) -> list[str]:
    with pytest.raises(InputError) as info:
        read_import_file(path)
    return [str(d) for d in info.value.diagnostics]


def test_a_good_file_reads_into_located_rows_and_notes_launch_columns(tmp_path: Path) -> None:
    """Rows keep line and field numbers; an mgn:launch:* column is ignored with a note."""
    imported = read_import_file(write(tmp_path, GOOD))
    assert [
        (r.line, r.wave.value, r.server_key.value, r.server_key.col) for r in imported.rows
    ] == [
        (2, "Payments wave", "CMDB-001", 5),
        (3, "Payments wave", "pay-db-01.corp.example.com", 6),
        (4, "Payments wave", "hr-app-01", 5),
        (5, "HR wave", "hr-app-02", 5),
    ]
    assert [str(n) for n in imported.notes] == [
        f'{tmp_path / "import.csv"}:1:9: note: column "mgn:launch:instance-type": launch '
        "settings are not part of a plan; ignored"
    ]


def test_a_byte_order_mark_is_refused_with_the_other_errors(tmp_path: Path) -> None:
    """A BOM is located at 1:1 and does not hide the rows' own errors."""
    text = HEADER + "12345,us-east-1,w,app,x,,,,\n"
    path = write(tmp_path, b"\xef\xbb\xbf" + text.encode())
    assert errors_of(path) == [
        f"{path}:1:1: the file starts with a byte order mark; save it as UTF-8 without BOM",
        f'{path}:2:1: mgn:account-id: "12345" is not an AWS account ID (12 digits)',
    ]


def test_semicolons_as_separator_are_named(tmp_path: Path) -> None:
    """A file separated by semicolons (a European spreadsheet's CSV) says so at 1:1."""
    path = write(tmp_path, HEADER.replace(",", ";") + "1;2;3\n")
    assert errors_of(path) == [
        f"{path}:1:1: the separator is a semicolon; MGN's import file separates with commas"
    ]


def test_missing_and_unknown_columns_are_all_reported(tmp_path: Path) -> None:
    """A misspelt column gets a did-you-mean, and the columns it leaves missing are named."""
    path = write(tmp_path, "mgn:wave:name,mgn:app:nmae,owner\nw,a,b\n")
    assert errors_of(path) == [
        f'{path}:1: missing column "mgn:app:name"',
        f'{path}:1: missing column "mgn:server:user-provided-id" (or '
        '"mgn:server:fqdn-for-action-framework"): names servers',
        f'{path}:1:2: unknown column "mgn:app:nmae"; did you mean "mgn:app:name"?',
        f'{path}:1:3: unknown column "owner"',
    ]


def test_bad_rows_are_each_located_at_their_field(tmp_path: Path) -> None:
    """Unquoted-number account, unknown region, empty names, short row: all, at line:field."""
    path = write(
        tmp_path,
        HEADER
        + "22222222222,us-east-1,w,app,x,,,,\n"
        + f"{ACCT_A},eu-wset-1,w,app,y,,,,\n"
        + f"{ACCT_A},us-east-1,,,,,,,\n"
        + f"{ACCT_A},us-east-1,w\n",
    )
    assert errors_of(path) == [
        f'{path}:2:1: mgn:account-id: "22222222222" is not an AWS account ID (12 digits)',
        f'{path}:3:2: mgn:region: "eu-wset-1" is not a region botocore knows; did you mean '
        '"eu-west-1"?',
        f"{path}:4:3: mgn:wave:name: empty",
        f"{path}:4:4: mgn:app:name: empty",
        f"{path}:4:5: mgn:server:user-provided-id or mgn:server:fqdn-for-action-framework: empty",
        f"{path}:5:4: 3 fields where the header has 9",
    ]


def test_a_server_twice_in_one_wave_or_in_two_waves(tmp_path: Path) -> None:
    """A repeat in one wave is named at the repeat; a server in two waves at both rows."""
    path = write(
        tmp_path,
        HEADER
        + f"{ACCT_A},us-east-1,w1,app,x,,,,\n"
        + f"{ACCT_A},us-east-1,w1,app,X,,,,\n"
        + f"{ACCT_A},us-east-1,w2,app,y,,,,\n"
        + f"{ACCT_A},us-east-1,w3,app,y,,,,\n",
    )
    assert errors_of(path) == [
        f'{path}:3:5: server "X" is listed twice (first at line 2)',
        f'{path}:4:5: server "y" is in wave "w2" here and in wave "w3" at line 5',
        f'{path}:5:5: server "y" is in wave "w3" here and in wave "w2" at line 4',
    ]


def test_import_writes_one_plan_per_wave_with_ids_resolved_through_mgn(
    tmp_path: Path, emulator: object
) -> None:
    """By userProvidedID, FQDN and hostname, per account: two plans of IDs that load back."""
    from orchestrator.emulator.testing import EmulatorHandle

    assert isinstance(emulator, EmulatorHandle)
    emulator.seed(FIXTURE)
    csv = write(tmp_path, GOOD)
    out = tmp_path / "waves"
    result = mgn_cutover(["import", str(csv), "--out", str(out)], cli_env(emulator.url))
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in out.iterdir()) == ["HR-wave.yaml", "Payments-wave.yaml"]
    assert "mgn:launch:instance-type" in result.stderr
    waves = {w.name: w for w in load_waves([out]).waves}
    pay = waves["Payments-wave"]
    assert [
        (a.application_id, a.name, a.server_ids, pay.target_of(a)) for a in pay.applications
    ] == [
        (APP_PAY, "payments", (S1, S2), Target(ACCT_A, "us-east-1")),
        (APP_HR, "hr", (S3,), Target(ACCT_B, "eu-west-1")),
    ]
    assert waves["HR-wave"].server_ids == (S4,)
    assert (waves["HR-wave"].account_id, waves["HR-wave"].region) == (ACCT_B, "eu-west-1")

    again = mgn_cutover(["import", str(csv), "--out", str(out)], cli_env(emulator.url))
    assert again.returncode == 2
    assert f"{out / 'HR-wave.yaml'}: exists; --force overwrites it" in again.stderr
    forced = mgn_cutover(["import", str(csv), "--out", str(out), "--force"], cli_env(emulator.url))
    assert forced.returncode == 0, forced.stderr


def test_a_bad_file_sends_nothing_to_mgn(tmp_path: Path, emulator: object) -> None:
    """A CSV with errors exits 2 with every error located, and MGN never hears of it."""
    from orchestrator.emulator.testing import EmulatorHandle

    assert isinstance(emulator, EmulatorHandle)
    emulator.seed(FIXTURE)
    csv = write(tmp_path, b"\xef\xbb\xbf" + GOOD.replace(ACCT_B, "3333").encode())
    result = mgn_cutover(["import", str(csv), "--out", str(tmp_path / "w")], cli_env(emulator.url))
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"{csv}:1:1: the file starts with a byte order mark; save it as UTF-8 without BOM",
        f'{csv}:4:1: mgn:account-id: "3333" is not an AWS account ID (12 digits)',
        f'{csv}:5:1: mgn:account-id: "3333" is not an AWS account ID (12 digits)',
    ]
    assert emulator.calls("DescribeSourceServers") == emulator.calls("ListApplications") == 0
    assert not (tmp_path / "w").exists()


def test_names_mgn_cannot_resolve_are_errors_at_their_cell(
    tmp_path: Path, emulator: object
) -> None:
    """No match, two matches by hostname, an unknown application: exit 2, each at line:field."""
    from orchestrator.emulator.testing import EmulatorHandle

    assert isinstance(emulator, EmulatorHandle)
    twin = {
        "sourceServerID": "s-00000000000000009",
        "applicationID": APP_PAY,
        "accountID": ACCT_A,
        "hostname": "pay-db-01",
    }
    emulator.seed({**FIXTURE, "servers": [*FIXTURE["servers"], twin]})
    csv = write(
        tmp_path,
        HEADER
        + f"{ACCT_A},us-east-1,w,payments,nowhere-01,,,,\n"
        + f"{ACCT_A},us-east-1,w,payments,pay-db-01,,,,\n"
        + f"{ACCT_A},us-east-1,w,billing,CMDB-001,,,,\n",
    )
    out = tmp_path / "w"
    result = mgn_cutover(["import", str(csv), "--out", str(out)], cli_env(emulator.url))
    assert result.returncode == 2, result.stderr
    where = f"in account {ACCT_A}, region us-east-1"
    assert result.stderr.splitlines()[1:] == [
        f'{csv}:2:5: "nowhere-01": no source server {where} has this userProvidedID, hostname '
        "or FQDN",
        f'{csv}:3:5: "pay-db-01": matches 2 source servers {where} by hostname or FQDN: {S2}, '
        "s-00000000000000009",
        f'{csv}:4:4: mgn:app:name "billing": no MGN application has this name {where} (MGN has: '
        '"payments")',
    ]
    assert not out.exists()


def test_an_account_outside_the_global_view_is_an_error_at_its_cell(
    tmp_path: Path, emulator: object
) -> None:
    """An account ListManagedAccounts does not list: exit 2 at its first row's account cell."""
    from orchestrator.emulator.testing import EmulatorHandle

    assert isinstance(emulator, EmulatorHandle)
    emulator.seed(FIXTURE)
    csv = write(tmp_path, GOOD.replace(ACCT_B, "999999999999"))
    result = mgn_cutover(["import", str(csv), "--out", str(tmp_path / "w")], cli_env(emulator.url))
    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines()[1:] == [
        f"{csv}:4:1: account 999999999999, region eu-west-1: MGN refused: NotManaged: account "
        "999999999999 is not among the accounts ListManagedAccounts lists"
    ]
