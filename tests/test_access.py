"""Assumed-role sessions: one AssumeRole per account, refreshed before the credentials expire."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from pathlib import Path
from typing import Any

import botocore.exceptions
import botocore.loaders
import pytest

from orchestrator import access, validation
from orchestrator.config import load_config
from orchestrator.errors import AccountError
from orchestrator.plan import Target


def assumed_roles() -> list[Any]:
    from moto.sts.models import sts_backends

    return [
        role
        for regions in sts_backends.values()
        for backend in regions.values()
        for role in backend.assumed_roles
    ]


def test_session_name_names_the_wave_within_stss_rules() -> None:
    """The RoleSessionName is mgn-cutover-<wave>, at most 64 of STS's allowed characters."""
    assert access.session_name("wave-01") == "mgn-cutover-wave-01"
    assert len(access.session_name("w" * 64)) == 64


def test_assumed_credentials_refresh_before_they_expire(
    moto_url: str, monkeypatch: pytest.MonkeyPatch, fake_credentials: dict[str, str], tmp_path: Path
) -> None:
    """Credentials within minutes of expiry are replaced by a new AssumeRole on next use."""
    monkeypatch.setenv("AWS_ENDPOINT_URL_STS", moto_url)
    config_file = tmp_path / "c.yaml"
    config_file.write_text(
        "account_access: assume-role\nrole_arn: arn:aws:iam::{accountID}:role/R\n"
    )
    config = load_config(config_file, {}, {})
    route = access.route(config, Target("222222222222", "eu-west-1"), pool=10)

    async def scenario() -> tuple[str, str]:
        session = await access.open_session(route, config, "night")
        creds = session.aio()._session._credentials
        first = (await creds.get_frozen_credentials()).access_key
        # As if the night went on for 55 minutes: 5 minutes left, inside the mandatory window.
        creds._expiry_time = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=5)
        second = (await creds.get_frozen_credentials()).access_key
        return first, second

    first, second = asyncio.run(scenario())
    assert first != second
    roles = assumed_roles()
    assert [r.access_key_id for r in roles] == [first, second]
    assert {r.role_arn for r in roles} == {"arn:aws:iam::222222222222:role/R"}


def test_a_failed_assume_role_is_an_account_error_naming_the_role(
    monkeypatch: pytest.MonkeyPatch, fake_credentials: dict[str, str], tmp_path: Path
) -> None:
    """STS unreachable: AccountError naming the role; no credential in the message."""
    monkeypatch.setenv("AWS_ENDPOINT_URL_STS", "http://127.0.0.1:9")
    config = load_config(None, {"MGN_CUTOVER_ROLE_ARN": "arn:aws:iam::{accountID}:role/R"}, {})
    config = config.__class__(**{**config.__dict__, "account_access": "assume-role"})
    route = access.route(config, Target("222222222222", "us-east-1"), pool=10)
    with pytest.raises(AccountError) as info:
        asyncio.run(access.open_session(route, config, "w"))
    assert "AssumeRole arn:aws:iam::222222222222:role/R failed" in str(info.value)
    assert fake_credentials["AWS_SECRET_ACCESS_KEY"] not in str(info.value)


def test_routes_per_access_mode() -> None:
    """global-view sends accountID; assume-role names the role; profiles picks the profile;
    an application without an account uses the caller's own credentials."""
    base = {"MGN_CUTOVER_REGION": "us-east-1"}
    target = Target("222222222222", "eu-west-1")
    view = access.route(load_config(None, base, {}), target, pool=10)
    assert (view.settings.account_id, view.settings.region, view.role_arn) == (
        "222222222222",
        "eu-west-1",
        None,
    )
    roles = load_config(
        None,
        {**base, "MGN_CUTOVER_ACCOUNT_ACCESS": "assume-role",
         "MGN_CUTOVER_ROLE_ARN": "arn:aws:iam::{accountID}:role/M"},
        {},
    )  # fmt: skip
    role = access.route(roles, target, pool=10)
    assert (role.settings.account_id, role.role_arn) == (None, "arn:aws:iam::222222222222:role/M")
    profiles = load_config(
        None,
        {**base, "MGN_CUTOVER_ACCOUNT_ACCESS": "profiles",
         "MGN_CUTOVER_ACCOUNT_PROFILES": "222222222222=prod"},
        {},
    )  # fmt: skip
    prof = access.route(profiles, target, pool=10)
    assert (prof.settings.account_id, prof.settings.profile) == (None, "prod")
    own = access.route(roles, Target(None, None), pool=10)
    assert (own.settings.account_id, own.settings.region, own.role_arn) == (None, "us-east-1", None)


def test_sessions_share_the_data_loader_plan_validation_read_the_regions_with(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without a data_path every session (botocore's own and aioboto3's) uses the loader that
    already holds botocore's partition data; with one, botocore's own loader for that path
    (shared among sessions)."""

    async def loaders(sessions: access.Sessions, region: str) -> list[Any]:
        session = sessions.of_profile(None, region)
        plain = (await session.plain()).get_component("data_loader")
        aio = session.aio()._session.get_component("data_loader")
        assumed = sessions.new(None, region)._session.get_component("data_loader")
        return [plain, aio, assumed]

    sessions = access.Sessions()
    found = asyncio.run(loaders(sessions, "us-east-1"))
    assert all(loader is validation.data_loader() for loader in found)
    monkeypatch.setenv("AWS_DATA_PATH", str(tmp_path))
    custom = access.Sessions()
    (loader, *others) = asyncio.run(loaders(custom, "us-east-1"))
    assert loader is not validation.data_loader()
    assert str(tmp_path) in loader.search_paths
    assert all(other is loader for other in others)


def test_the_accounts_of_one_profile_and_region_share_one_describing_client(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Global view: ten accounts reached with one profile in one region, opened at once, open
    one botocore client for their endpoint and credentials (it never sends), each with its own
    lean connections; another region gets its own; the last account closing closes it."""
    from orchestrator.mgn import ClientSettings, MgnClient

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAFAKETESTKEY00001")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "fakeSecretKeyDoNotLeak000")

    async def open_them() -> None:
        session = access.Sessions().of_profile(None, "us-east-1")
        clients = [
            MgnClient(
                ClientSettings(
                    region=region, endpoint_url="http://127.0.0.1:9", account_id=f"{n:012d}"
                ),
                session=session,
            )
            for n, region in enumerate(["us-east-1"] * 3 + ["eu-west-1"])
        ]
        async with contextlib.AsyncExitStack() as stack:
            for client in clients:
                stack.push_async_exit(client)
            # as a run opens them: all at once, each first waiting for the credentials
            await asyncio.gather(*(client.__aenter__() for client in clients))
            plain = [client._plain for client in clients]
            assert plain[0] is plain[1] is plain[2] and plain[3] is not plain[0]
            assert len({id(client._wire) for client in clients}) == 4
            assert plain[3].meta.region_name == "eu-west-1"
            assert len(session._clients) == 2
        assert session._clients == {}

    asyncio.run(open_them())


def test_the_data_loader_loads_a_service_without_listing_every_service(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`validation.DataLoader` loads the same models as botocore's own loader and refuses an
    unknown service with the same error, but loading a known one never lists the folders of
    every service (botocore's `list_available_services`, ~15 ms a model type); asked directly,
    that list is botocore's."""
    plain, fast = botocore.loaders.Loader(), validation.DataLoader()
    listed: list[str] = []
    listing = botocore.loaders.Loader.list_available_services

    def counted(self: Any, type_name: str) -> list[str]:
        listed.append(type_name)
        return listing(self, type_name)  # type: ignore[no-any-return]

    for service in ("mgn", "ec2", "sts", "s3", "sns", "dynamodb"):
        for kind in ("service-2", "endpoint-rule-set-1"):
            expected = plain.load_service_model(service, kind)
            monkeypatch.setattr(botocore.loaders.Loader, "list_available_services", counted)
            assert fast.load_service_model(service, kind) == expected
            monkeypatch.setattr(botocore.loaders.Loader, "list_available_services", listing)
    assert listed == []
    for name in ("no-such-service", "..", "mgn/../ec2"):
        with pytest.raises(botocore.exceptions.UnknownServiceError) as wanted:
            plain.load_service_model(name, "service-2")
        with pytest.raises(botocore.exceptions.UnknownServiceError) as got:
            fast.load_service_model(name, "service-2")
        assert str(got.value) == str(wanted.value)
    assert fast.list_available_services("service-2") == plain.list_available_services("service-2")
    assert "mgn" in fast.list_available_services("service-2")
