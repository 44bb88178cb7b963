"""Reaching each plan account: the global view, a role assumed in it, or a profile for it.

The STS boundary lives here (as MGN's lives in `mgn.py`): AssumeRole against the target region's
own STS endpoint, the session named after the wave, and credentials that refresh themselves
before they expire (aiobotocore's RefreshableCredentials), so a long night never meets an
expired token. Credentials are never logged, returned in messages or written anywhere. Only
assume-role imports aioboto3 (and aiobotocore, aiohttp: ~0.2 s); profiles and the global view
start on botocore's own sessions (`sessions.AwsSession`).

    global-view   MGN calls carry accountID; ListManagedAccounts must list the account
    assume-role   role_arn (with {accountID}) assumed per account; no accountID sent
    profiles      account_profiles[accountID] as the session's profile; no accountID sent
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import botocore.session

from orchestrator.config import Config
from orchestrator.errors import AccountError, MgnCutoverError
from orchestrator.mgn import ClientSettings, translate
from orchestrator.plan import Target
from orchestrator.sessions import AwsSession, default_loader

if TYPE_CHECKING:
    from aiobotocore.config import AioConfig

ASSUMED_ROLE_DURATION_S = 3600
_SESSION_NAME_UNSAFE = re.compile(r"[^\w+=,.@-]")


def session_name(wave: str) -> str:
    """The AssumeRole session name: names the wave, so CloudTrail shows which wave acted."""
    return _SESSION_NAME_UNSAFE.sub("-", f"mgn-cutover-{wave}")[:64]


def role_for(config: Config, account_id: str) -> str:
    """The role ARN to assume in `account_id` (role_arn with {accountID} filled in)."""
    assert config.role_arn is not None
    return config.role_arn.replace("{accountID}", account_id)


def uncovered(config: Config, account_id: str) -> str | None:
    """Why no access mode reaches `account_id` with these settings, or None when one does."""
    if config.account_access == "assume-role" and config.role_arn is None:
        return "account_access assume-role needs role_arn"
    if config.account_access == "profiles" and account_id not in dict(config.account_profiles):
        return f"account_access profiles: account_profiles has no profile for {account_id}"
    return None


@dataclass(frozen=True)
class Route:
    """How one (account, region) is reached: client settings and, for assume-role, a role."""

    settings: ClientSettings
    role_arn: str | None = None

    @property
    def global_view(self) -> bool:
        return self.settings.account_id is not None


def route(config: Config, target: Target, *, pool: int) -> Route:
    """The route to `target` under `config.account_access` (None account: the caller's own)."""
    region = target.region or config.region
    base = ClientSettings(
        region=region,
        profile=config.profile,
        endpoint_url=config.endpoint_url,
        max_pool_connections=pool,
    )
    account = target.account_id
    if account is None:
        return Route(base)
    if config.account_access == "assume-role":
        return Route(base, role_for(config, account))
    if config.account_access == "profiles":
        profile = dict(config.account_profiles).get(account, config.profile)
        return Route(ClientSettings(**{**base.__dict__, "profile": profile}))
    return Route(ClientSettings(**{**base.__dict__, "account_id": account}))


Fetch = Callable[[], Awaitable[dict[str, Any]]]


def assume_role_fetcher(
    route: Route, config: Config, wave: str, *, duration_s: int = ASSUMED_ROLE_DURATION_S
) -> Fetch:
    """A coroutine function returning fresh credentials metadata for the route's role.

    Each call is one AssumeRole through the region's own STS endpoint. Raises AccountError (or
    another MgnCutoverError) translated from botocore, never with credentials in its message.
    """
    assert route.role_arn is not None
    role_arn = route.role_arn
    s = route.settings
    params: dict[str, Any] = {
        "RoleArn": role_arn,
        "RoleSessionName": session_name(wave),
        "DurationSeconds": duration_s,
    }
    if config.external_id is not None:
        params["ExternalId"] = config.external_id

    async def fetch() -> dict[str, Any]:
        import aioboto3

        base = aioboto3.Session(profile_name=s.profile, region_name=s.region)
        base._session.set_config_variable("sts_regional_endpoints", "regional")
        try:
            async with base.client("sts", region_name=s.region, config=_sts_config()) as sts:
                answer = await sts.assume_role(**params)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            err = translate(exc)
            raise _assume_failed(err, role_arn) from exc
        creds = answer["Credentials"]
        expiry = creds["Expiration"]
        return {
            "access_key": creds["AccessKeyId"],
            "secret_key": creds["SecretAccessKey"],
            "token": creds["SessionToken"],
            "expiry_time": expiry.isoformat() if isinstance(expiry, datetime) else str(expiry),
        }

    return fetch


def _assume_failed(err: MgnCutoverError, role_arn: str) -> AccountError:
    code = getattr(err, "code", type(err).__name__)
    message = getattr(err, "message", str(err))
    return AccountError(str(code), f"AssumeRole {role_arn} failed: {message}")


def _sts_config() -> AioConfig:
    from aiobotocore.config import AioConfig

    return AioConfig(retries={"total_max_attempts": 3, "mode": "standard"}, connect_timeout=5)


class Sessions:
    """The AWS sessions of one run: one per profile, shared by every target it reaches, and one
    per assumed role; all share one botocore data loader, so each service model is loaded and
    kept once (ten accounts would otherwise hold ten copies)."""

    def __init__(self) -> None:
        self._by_profile: dict[str | None, AwsSession] = {}
        self._loader: Any = None

    def loader(self, session: botocore.session.Session) -> Any:
        """The loader every session of the run shares: the first session's choice
        (`sessions.default_loader`)."""
        if self._loader is None:
            self._loader = default_loader(session)
        return self._loader

    def new(self, profile: str | None, region: str | None) -> Any:
        """A fresh aioboto3 Session (for credentials of its own) sharing the data loader."""
        import aioboto3

        session = aioboto3.Session(profile_name=profile, region_name=region)
        session._session.register_component("data_loader", self.loader(session._session))
        return session

    def of_profile(self, profile: str | None, region: str | None) -> AwsSession:
        """The sessions of `profile` (botocore's chain for None), made once."""
        session = self._by_profile.get(profile)
        if session is None:
            session = AwsSession(profile, region, loader=self.loader)
            self._by_profile[profile] = session
        return session


async def open_session(
    route: Route, config: Config, wave: str, sessions: Sessions | None = None
) -> AwsSession:
    """The sessions for the route: for assume-role, an aioboto3 Session holding credentials of
    the role that refresh themselves (aiobotocore refreshes them 15 min before they expire);
    otherwise the profile's, shared through `sessions`.

    Raises AccountError when the first AssumeRole fails.
    """
    s = route.settings
    sessions = sessions or Sessions()
    if route.role_arn is None:
        return sessions.of_profile(s.profile, s.region)
    from aiobotocore.credentials import AioRefreshableCredentials

    session = sessions.new(s.profile, s.region)
    fetch = assume_role_fetcher(route, config, wave)
    metadata = await fetch()
    credentials = AioRefreshableCredentials.create_from_metadata(
        metadata, refresh_using=fetch, method="assume-role"
    )
    # aioboto3 keeps its botocore session private; this is where a session's credentials live.
    session._session._credentials = credentials
    return AwsSession(s.profile, s.region, assumed=session, loader=sessions.loader)
