"""The AWS boundary: every botocore call this project makes, and every botocore error translated.

Nothing else in the package imports botocore, boto3 or aioboto3. Each method makes exactly one
attempt (botocore's own retries are off because botocore ignores `Retry-After`); retrying is the
caller's business (`orchestrator.retry`).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import aioboto3
import botocore.exceptions as bce
import botocore.session
from aiobotocore.config import AioConfig
from botocore.parsers import ResponseParserError

from orchestrator.answers import PROBLEM_KEY, make_hook
from orchestrator.errors import (
    AccountError,
    ConfigError,
    ConflictError,
    MgnCutoverError,
    MgnError,
    NotFoundError,
    RequestRejectedError,
    RetryableError,
    ThrottledError,
)

MAX_IDS_PER_DESCRIBE = 200  # DescribeSourceServers filters.sourceServerIDs max
MAX_IDS_PER_INSTANCE_STATUS = 100

# Error codes that mean nothing more may be sent for this account: stop the wave.
ACCOUNT_WIDE_CODES = frozenset(
    {
        "UninitializedAccountException",
        "AccessDeniedException",
        "AccessDenied",
        "UnauthorizedOperation",
        "ExpiredToken",
        "ExpiredTokenException",
        "InvalidClientTokenId",
        "UnrecognizedClientException",
        "InvalidSignatureException",
        "SignatureDoesNotMatch",
        "AuthFailure",
    }
)
_THROTTLE_CODES = frozenset(
    {"ThrottlingException", "Throttling", "TooManyRequestsException", "RequestLimitExceeded"}
)
_CREDENTIAL_ERRORS: tuple[type[Exception], ...] = (
    bce.NoCredentialsError,
    bce.PartialCredentialsError,
    bce.CredentialRetrievalError,
    bce.TokenRetrievalError,
    bce.SSOError,
    bce.ProfileNotFound,
)


@functools.cache
def _enum(shape_name: str) -> frozenset[str]:
    """The values botocore's MGN model allows for an enum shape (the model is read once)."""
    model = botocore.session.get_session().get_service_model("mgn")
    return frozenset(model.shape_for(shape_name).enum)


def lifecycle_states() -> frozenset[str]:
    """`lifeCycle.state` values (LifeCycleState in botocore's model)."""
    return _enum("LifeCycleState")


def replication_states() -> frozenset[str]:
    """`dataReplicationInfo.dataReplicationState` values (DataReplicationState)."""
    return _enum("DataReplicationState")


def first_boot_values() -> frozenset[str]:
    """`launchedInstance.firstBoot` values (FirstBoot)."""
    return _enum("FirstBoot")


# The few values our decisions name; each is checked against the model when a view is parsed.
CUTTING_OVER, CUTOVER, DISCONNECTED, SUCCEEDED = (
    "CUTTING_OVER",
    "CUTOVER",
    "DISCONNECTED",
    "SUCCEEDED",
)


@dataclass(frozen=True)
class ServerView:
    """What MGN says of one server, read defensively: odd answers become `None` plus a problem."""

    source_server_id: str
    application_id: str | None = None
    name: str | None = None
    lifecycle_state: str | None = None
    replication_state: str | None = None
    first_boot: str | None = None
    ec2_instance_id: str | None = None
    archived: bool | None = None
    problem: str | None = None

    @property
    def converged(self) -> bool:
        """MGN shows the cutover as finished: CUTOVER and replication DISCONNECTED."""
        return self.lifecycle_state == CUTOVER and self.replication_state == DISCONNECTED


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def parse_server(item: dict[str, Any]) -> ServerView | None:
    """Read one SourceServer answer; None when it has no usable sourceServerID."""
    server_id = _str(item.get("sourceServerID"))
    if server_id is None:
        return None
    life = _dict(item.get("lifeCycle"))
    repl = _dict(item.get("dataReplicationInfo"))
    launched = _dict(item.get("launchedInstance"))
    hints = _dict(_dict(item.get("sourceProperties")).get("identificationHints"))
    tags = _dict(item.get("tags"))
    state = _str(life.get("state"))
    replication = _str(repl.get("dataReplicationState"))
    first_boot = _str(launched.get("firstBoot"))
    archived = item.get("isArchived")
    problems = [str(item[PROBLEM_KEY])] if item.get(PROBLEM_KEY) else []
    if launched.get("firstBoot") is not None and first_boot is None:
        problems.append(f"firstBoot is not a string: {launched.get('firstBoot')!r}")
    if state not in lifecycle_states():
        problems.append(f"unknown lifecycle state {state!r}")
    if replication is not None and replication not in replication_states():
        problems.append(f"unknown replication state {replication!r}")
    if first_boot is not None and first_boot not in first_boot_values():
        problems.append(f"unknown firstBoot {first_boot!r}")
    if archived is not None and not isinstance(archived, bool):
        problems.append(f"isArchived is not a boolean: {archived!r}")
    return ServerView(
        source_server_id=server_id,
        application_id=_str(item.get("applicationID")),
        name=_str(hints.get("hostname")) or _str(tags.get("Name")),
        lifecycle_state=state,
        replication_state=replication,
        first_boot=first_boot,
        ec2_instance_id=_str(launched.get("ec2InstanceID")),
        archived=archived if isinstance(archived, bool) else None,
        problem="; ".join(problems) or None,
    )


@dataclass(frozen=True)
class ServerIdentity:
    """The names MGN knows a source server by: what an import file's row is matched against."""

    source_server_id: str
    application_id: str | None = None
    user_provided_id: str | None = None
    hostname: str | None = None
    fqdn: str | None = None
    fqdn_for_action_framework: str | None = None


def parse_identity(item: dict[str, Any]) -> ServerIdentity | None:
    """A SourceServer answer's names; None when it has no usable sourceServerID."""
    server_id = _str(item.get("sourceServerID"))
    if server_id is None:
        return None
    hints = _dict(_dict(item.get("sourceProperties")).get("identificationHints"))
    return ServerIdentity(
        server_id,
        _str(item.get("applicationID")),
        _str(item.get("userProvidedID")),
        _str(hints.get("hostname")),
        _str(hints.get("fqdn")),
        _str(item.get("fqdnForActionFramework")),
    )


@dataclass(frozen=True)
class ClientSettings:
    """How to reach AWS: region, profile and endpoint; credentials come from boto3's chain."""

    region: str | None = None
    profile: str | None = None
    endpoint_url: str | None = None
    account_id: str | None = None
    max_pool_connections: int = 10
    connect_timeout_s: float = 5.0
    read_timeout_s: float = 30.0


def translate(exc: BaseException) -> MgnCutoverError:
    """Map a botocore/aiobotocore exception to the project's error tree (use `raise ... from`)."""
    if isinstance(exc, bce.ClientError):
        return _translate_client_error(exc)
    if isinstance(exc, bce.NoRegionError):
        return ConfigError("no AWS region: set --region, `region` in the config, or AWS_REGION")
    if isinstance(exc, _CREDENTIAL_ERRORS):
        return AccountError("CredentialsError", _one_line(str(exc)))
    if isinstance(exc, bce.EndpointConnectionError | bce.ConnectTimeoutError):
        # The request never reached the service: not ambiguous.
        return RetryableError("ConnectionError", _one_line(str(exc)))
    if isinstance(exc, bce.HTTPClientError | bce.ConnectionError | asyncio.TimeoutError):
        # The connection dropped or timed out after sending: the call may have taken effect.
        return RetryableError(type(exc).__name__, _one_line(str(exc)), ambiguous=True)
    if isinstance(exc, ResponseParserError):
        # An answer we cannot read: for a mutating call it may still have taken effect.
        return RetryableError("ResponseParserError", _one_line(str(exc)), ambiguous=True)
    if isinstance(exc, bce.BotoCoreError):
        return RequestRejectedError(type(exc).__name__, _one_line(str(exc)))
    return MgnError(type(exc).__name__, _one_line(str(exc)))


def _translate_client_error(exc: bce.ClientError) -> MgnCutoverError:
    response: dict[str, Any] = exc.response
    error = response.get("Error", {})
    code = str(error.get("Code") or "Unknown")
    message = _one_line(str(error.get("Message") or response.get("message") or code))
    status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    if code in ACCOUNT_WIDE_CODES or status == 403:
        return AccountError(code, message)
    retry_after = _retry_after_s(response)
    if code in _THROTTLE_CODES or status == 429:
        return ThrottledError(code, message, status, retry_after)
    if code == "InternalServerException" or (isinstance(status, int) and status >= 500):
        return RetryableError(code, message, status, retry_after)
    if code == "ConflictException" or status == 409:
        return ConflictError(code, message, status)
    if code == "ResourceNotFoundException" or status == 404:
        return NotFoundError(code, message, status)
    return RequestRejectedError(code, message, status)


def _retry_after_s(response: dict[str, Any]) -> float | None:
    raw = response.get("retryAfterSeconds")
    if raw is None:
        raw = response.get("ResponseMetadata", {}).get("HTTPHeaders", {}).get("retry-after")
    try:
        value = float(raw) if raw is not None else None
    except (TypeError, ValueError):
        return None
    return value if value is not None and 0 <= value <= 3600 else None


def _one_line(text: str) -> str:
    return " ".join(text.split())[:500]


def chunks(items: Sequence[str], size: int) -> list[list[str]]:
    """Split `items` into lists of at most `size`, keeping order."""
    return [list(items[i : i + size]) for i in range(0, len(items), size)]


class MgnClient:
    """One aioboto3 MGN client for one (account, region); `async with` opens and closes it."""

    def __init__(self, settings: ClientSettings, *, session: Any = None) -> None:
        """`session`: an aioboto3 Session to use (an assumed role's); default: boto3's chain."""
        self.settings = settings
        self._stack = contextlib.AsyncExitStack()
        self._client: Any = None
        self._ec2: Any = None
        self._session: Any = session

    async def __aenter__(self) -> MgnClient:
        s = self.settings
        try:
            if self._session is None:
                self._session = aioboto3.Session(profile_name=s.profile, region_name=s.region)
            self._client = await self._stack.enter_async_context(
                self._session.client(
                    "mgn", region_name=s.region, endpoint_url=s.endpoint_url, config=self._config()
                )
            )
        except Exception as exc:
            await self._stack.aclose()
            raise translate(exc) from exc
        self._check_answers(self._client)
        return self

    @staticmethod
    def _check_answers(client: Any) -> None:
        """Catch off-model SourceServer answers before botocore's parser sees them."""
        model = client.meta.service_model
        server_shape = model.shape_for("SourceServer")
        events = client.meta.events
        events.register(
            "before-parse.mgn.DescribeSourceServers", make_hook(server_shape, single=False)
        )
        events.register("before-parse.mgn.FinalizeCutover", make_hook(server_shape, single=True))

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._stack.aclose()

    def _config(self) -> AioConfig:
        s = self.settings
        return AioConfig(
            retries={"total_max_attempts": 1, "mode": "standard"},
            max_pool_connections=max(10, s.max_pool_connections),
            connect_timeout=s.connect_timeout_s,
            read_timeout=s.read_timeout_s,
        )

    def _account(self) -> dict[str, str]:
        return {"accountID": self.settings.account_id} if self.settings.account_id else {}

    async def _call(self, client: Any, operation: str, **params: Any) -> dict[str, Any]:
        try:
            response: dict[str, Any] = await getattr(client, operation)(**params)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            raise translate(exc) from exc
        return response

    async def describe(
        self, server_ids: Sequence[str], states: Sequence[str] = ()
    ) -> list[ServerView]:
        """DescribeSourceServers for at most 200 IDs (one call per page of the answer), each
        server parsed into our view; servers MGN returns that were not asked for are dropped.

        With `states`, only servers in those lifecycle states come back (smaller answers).
        Raises MgnError subclasses (or AccountError) for the failed call.
        """
        if len(server_ids) > MAX_IDS_PER_DESCRIBE:
            raise ValueError(f"at most {MAX_IDS_PER_DESCRIBE} IDs per call, got {len(server_ids)}")
        wanted = set(server_ids)
        views: list[ServerView] = []
        filters: dict[str, Any] = {"sourceServerIDs": list(server_ids)}
        if states:
            filters["lifeCycleStates"] = list(states)
        params: dict[str, Any] = {
            "filters": filters,
            "maxResults": MAX_IDS_PER_DESCRIBE,
            **self._account(),
        }
        while True:
            page = await self._call(self._client, "describe_source_servers", **params)
            problems = page.get(PROBLEM_KEY) or {}
            for item in page.get("items") or []:
                if isinstance(item, dict):
                    if item.get("sourceServerID") in problems:
                        item[PROBLEM_KEY] = problems[item["sourceServerID"]]
                    view = parse_server(item)
                    if view is not None and view.source_server_id in wanted:
                        views.append(view)
            token = page.get("nextToken")
            if not token:
                return views
            params["nextToken"] = token

    async def describe_applications(self, application_ids: Sequence[str]) -> list[dict[str, Any]]:
        """Every source server of the given applications (<= 200 IDs per call)."""
        items: list[dict[str, Any]] = []
        for batch in chunks(application_ids, MAX_IDS_PER_DESCRIBE):
            params: dict[str, Any] = {
                "filters": {"applicationIDs": batch, "isArchived": False},
                "maxResults": 1000,
                **self._account(),
            }
            while True:
                page = await self._call(self._client, "describe_source_servers", **params)
                items.extend(i for i in page.get("items") or [] if isinstance(i, dict))
                if not page.get("nextToken"):
                    break
                params["nextToken"] = page["nextToken"]
        return items

    async def identities(self) -> list[ServerIdentity]:
        """Every non-archived source server of the account and region, by the names MGN has
        for it (DescribeSourceServers, all pages). Raises MgnError subclasses or AccountError."""
        params: dict[str, Any] = {
            "filters": {"isArchived": False},
            "maxResults": 1000,
            **self._account(),
        }
        found: list[ServerIdentity] = []
        while True:
            page = await self._call(self._client, "describe_source_servers", **params)
            for item in page.get("items") or []:
                identity = parse_identity(item) if isinstance(item, dict) else None
                if identity is not None:
                    found.append(identity)
            if not page.get("nextToken"):
                return found
            params["nextToken"] = page["nextToken"]

    async def managed_accounts(self) -> frozenset[str]:
        """The accounts the caller's global view reaches (ListManagedAccounts, all pages).

        Raises AccountError when the caller is not a management or delegated-admin account.
        """
        params: dict[str, Any] = {}
        found: set[str] = set()
        while True:
            page = await self._call(self._client, "list_managed_accounts", **params)
            for item in page.get("items") or []:
                account = _str(_dict(item).get("accountId"))
                if account is not None:
                    found.add(account)
            if not page.get("nextToken"):
                return frozenset(found)
            params["nextToken"] = page["nextToken"]

    async def all_applications(self) -> list[dict[str, Any]]:
        """Every non-archived MGN application of the account (ListApplications, all pages)."""
        return await self._list("list_applications", {"filters": {"isArchived": False}})

    async def finalize(self, server_id: str) -> ServerView | None:
        """FinalizeCutover for one server. Irreversible. Returns MGN's answer as a view (None
        when the answer had no readable server). Raises MgnError subclasses."""
        answer = await self._call(
            self._client, "finalize_cutover", sourceServerID=server_id, **self._account()
        )
        return parse_server(answer)

    async def list_waves(self) -> list[dict[str, Any]]:
        """Every MGN wave of the account (ListWaves, all pages)."""
        return await self._list("list_waves", {})

    async def list_applications(self, wave_ids: Sequence[str]) -> list[dict[str, Any]]:
        """MGN applications of the given waves (ListApplications, all pages)."""
        return await self._list("list_applications", {"filters": {"waveIDs": list(wave_ids)}})

    async def _list(self, operation: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        params = {**params, **self._account()}
        while True:
            page = await self._call(self._client, operation, **params)
            items.extend(i for i in page.get("items") or [] if isinstance(i, dict))
            if not page.get("nextToken"):
                return items
            params["nextToken"] = page["nextToken"]

    async def instance_status(self, instance_ids: Sequence[str]) -> dict[str, dict[str, str]]:
        """EC2 DescribeInstanceStatus for at most 100 instances: {id: {state, system, instance}}.

        Instances EC2 does not report are absent from the answer.
        """
        if self._ec2 is None:
            # endpoint_url is for MGN; EC2 follows AWS_ENDPOINT_URL_EC2 / AWS_ENDPOINT_URL.
            self._ec2 = await self._stack.enter_async_context(
                self._session.client("ec2", region_name=self.settings.region, config=self._config())
            )
        result: dict[str, dict[str, str]] = {}
        params: dict[str, Any] = {"InstanceIds": list(instance_ids), "IncludeAllInstances": True}
        while True:
            page = await self._call(self._ec2, "describe_instance_status", **params)
            for st in page.get("InstanceStatuses") or []:
                result[str(st.get("InstanceId"))] = {
                    "state": str((st.get("InstanceState") or {}).get("Name", "unknown")),
                    "system": str((st.get("SystemStatus") or {}).get("Status", "unknown")),
                    "instance": str((st.get("InstanceStatus") or {}).get("Status", "unknown")),
                }
            if not page.get("NextToken"):
                return result
            params["NextToken"] = page["NextToken"]
