"""The MGN boundary: every MGN call this project makes, and every botocore error translated.

The calls made by the thousand (FinalizeCutover, DescribeSourceServers by ID) and the global
view's ListManagedAccounts go out through `wire`, with this client's endpoint, credentials and
settings but without botocore's per-request machinery. Those come from a plain botocore client
(`sessions`), so a run whose calls are all lean never imports aioboto3, aiobotocore or aiohttp
(~0.2 s of a ~0.6 s start); aiobotocore's client is made on the first call that needs it. What
the answers say is read by `views`. Each method makes exactly one attempt (botocore's own
retries are off because botocore ignores `Retry-After`); retrying is the caller's business
(`orchestrator.retry`). The other AWS services have their own boundaries: `access` (STS),
`dynamo`, `publish` (S3) and `notify` (SNS); `validation` reads botocore's bundled data.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import botocore.config
import botocore.exceptions as bce
import botocore.session
import structlog
from botocore.parsers import ResponseParserError

from orchestrator import __version__
from orchestrator.answers import PROBLEM_KEY, check_items, checks_for, page_frame
from orchestrator.errors import (
    AccountError,
    ConfigError,
    ConflictError,
    MgnCutoverError,
    MgnError,
    MisattributedError,
    NotFoundError,
    RequestRejectedError,
    RetryableError,
    ThrottledError,
)
from orchestrator.sessions import AwsSession
from orchestrator.views import (
    JobView,
    ServerIdentity,
    ServerView,
    mapping,
    parse_identity,
    parse_job,
    parse_server,
    text,
    use_model,
)
from orchestrator.wire import AnswerError, Wire, WireError, sends_itself

log = structlog.get_logger(__name__)

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
# Connection failures that mean the endpoint itself could not be reached (or answered oddly).
_CONNECT_CODES = frozenset(
    {
        "ConnectionError",
        "EndpointConnectionError",
        "ConnectTimeoutError",
        "ConnectionClosedError",
        "ReadTimeoutError",
        "HTTPClientError",
        "ProxyConnectionError",
    }
)
_CREDENTIAL_ERRORS: tuple[type[Exception], ...] = (
    bce.NoCredentialsError,
    bce.PartialCredentialsError,
    bce.CredentialRetrievalError,
    bce.TokenRetrievalError,
    bce.SSOError,
    bce.ProfileNotFound,
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
    # Where endpoint_url came from (`AWS_ENDPOINT_URL_MGN`, `--endpoint-url`, ...): for messages.
    endpoint_source: str | None = None


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
    return translate_response(exc.response)


def translate_response(response: dict[str, Any]) -> MgnCutoverError:
    """An error answer shaped as botocore's ClientError.response, in the project's tree."""
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
    """One MGN client for one (account, region); `async with` opens and closes it.

    The lean calls go out through `wire` from a plain botocore client's endpoint, settings and
    credentials; aiobotocore's client is made on the first call that needs it (any other
    operation), or at once where `wire` cannot send itself (a proxy, a client certificate) or
    the credentials are an assumed role's.
    """

    def __init__(self, settings: ClientSettings, *, session: AwsSession | None = None) -> None:
        """`session`: the profile's or assumed role's sessions; default: the settings' profile."""
        self.settings = settings
        self._session = session or AwsSession(settings.profile, settings.region)
        self._stack = contextlib.AsyncExitStack()
        self._opening = asyncio.Lock()
        self._plain: Any = None  # botocore's MGN client: never sends, only describes
        self._client: Any = None  # aiobotocore's MGN client, made by `_mgn`
        self._ec2: Any = None
        self._wire: Wire | None = None

    async def __aenter__(self) -> MgnClient:
        try:
            base = await self._plain_client()
            if base is None:
                base = await self._mgn()
        except Exception as exc:
            await self._close()
            raise self._located(translate(exc)) from exc
        self._check_answers(base.meta.service_model)
        user_agent = f"mgn-cutover/{__version__} botocore/{botocore.__version__}"
        self._wire = Wire(base, user_agent)
        return self

    async def _plain_client(self) -> Any:
        """botocore's MGN client with the same settings as aiobotocore's, for `wire` to send
        with; None for an assumed role's credentials or where `wire` cannot send itself."""
        if self._session.assumed:
            return None
        s = self.settings
        client = await self._session.describing_client(
            s.region, s.endpoint_url, self._config_values()
        )
        if not sends_itself(client):
            self._session.release(client)
            return None
        self._plain = client
        return client

    async def _mgn(self) -> Any:
        """aiobotocore's MGN client, made once, on first need. Raises botocore's errors."""
        if self._client is None:
            async with self._opening:
                if self._client is None:
                    s = self.settings
                    client = await self._open_aio(
                        "mgn", region_name=s.region, endpoint_url=s.endpoint_url
                    )
                    # DescribeSourceServers by application goes through botocore's parser.
                    hook = checks_for(client.meta.service_model).page_hook
                    client.meta.events.register("before-parse.mgn.DescribeSourceServers", hook)
                    self._client = client
        return self._client

    async def _ec2_client(self) -> Any:
        """aiobotocore's EC2 client, made once, on first need."""
        if self._ec2 is None:
            async with self._opening:
                if self._ec2 is None:
                    # endpoint_url is for MGN; EC2 follows AWS_ENDPOINT_URL_EC2 / AWS_ENDPOINT_URL.
                    self._ec2 = await self._open_aio("ec2", region_name=self.settings.region)
        return self._ec2

    async def _open_aio(self, service: str, **kwargs: Any) -> Any:
        from aiobotocore.config import AioConfig

        config = AioConfig(**self._config_values())
        session = self._session.aio()
        return await self._stack.enter_async_context(
            session.client(service, config=config, **kwargs)
        )

    def _check_answers(self, model: Any) -> None:
        """Catch off-model SourceServer answers in the lean calls' JSON (and, by `_mgn`'s
        hook, before botocore's parser sees them in the others)."""
        use_model(model)
        checks = checks_for(model)
        self._check_answer, self._check_item = checks.answer, checks.item

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._wire is not None:
            self._wire.close()
        await self._close()

    async def _close(self) -> None:
        if self._plain is not None:
            self._session.release(self._plain)
            self._plain = None
        await self._stack.aclose()

    def _config_values(self) -> dict[str, Any]:
        """botocore's Config (AioConfig for aiobotocore) of both clients."""
        s = self.settings
        return {
            "retries": {"total_max_attempts": 1, "mode": "standard"},
            "max_pool_connections": max(10, s.max_pool_connections),
            "connect_timeout": s.connect_timeout_s,
            "read_timeout": s.read_timeout_s,
        }

    def _account(self) -> dict[str, str]:
        return {"accountID": self.settings.account_id} if self.settings.account_id else {}

    async def _call(self, operation: str, **params: Any) -> dict[str, Any]:
        """One MGN call through aiobotocore's client (made on the first one)."""
        return await self._invoke(self._mgn, operation, params)

    async def _invoke(
        self, client: Callable[[], Awaitable[Any]], operation: str, params: dict[str, Any]
    ) -> dict[str, Any]:
        try:
            response: dict[str, Any] = await getattr(await client(), operation)(**params)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            raise self._located(translate(exc)) from exc
        return response

    async def _send(
        self, operation: str, params: dict[str, Any], *, unreadable_2xx_is_none: bool = False
    ) -> Any:
        """One lean call (`wire`); errors translated exactly as `_call` translates them.

        `unreadable_2xx_is_none`: a 2xx answer whose body is not JSON or was cut short returns
        None (the status line is the answer) instead of raising an ambiguous RetryableError.
        """
        assert self._wire is not None, "MgnClient used outside `async with`"
        try:
            return await self._wire.call(operation, params)
        except asyncio.CancelledError:
            raise
        except WireError as err:
            raise self._located(translate_response(err.response)) from None
        except AnswerError as err:
            if unreadable_2xx_is_none:
                log.warning("answer_body_unreadable", operation=operation, error=str(err))
                return None
            # An answer we cannot read: for a mutating call it may still have taken effect.
            raise RetryableError("ResponseParserError", str(err), ambiguous=True) from None
        except Exception as exc:
            raise self._located(translate(exc)) from exc

    async def _page(self, operation: str, params: dict[str, Any]) -> dict[str, Any]:
        """One page of a lean list call, its frame checked (`answers.page_frame`)."""
        return page_frame(await self._send(operation, params), operation)

    def _located(self, err: MgnCutoverError) -> MgnCutoverError:
        """The error with what a person needs to act on it: which endpoint setting was used for
        a connection that failed; that an unset endpoint means real AWS when credentials fail."""
        s = self.settings
        if isinstance(err, RetryableError) and err.code in _CONNECT_CODES and s.endpoint_url:
            source = s.endpoint_source or "endpoint_url"
            hint = f"; the MGN endpoint {s.endpoint_url} comes from {source}"
            return RetryableError(
                err.code, err.message + hint, err.status, err.retry_after_s, err.ambiguous
            )
        if isinstance(err, AccountError) and err.code == "CredentialsError" and not s.endpoint_url:
            hint = (
                " (AWS_ENDPOINT_URL_MGN is unset, so this is real AWS; for a rehearsal on the "
                "emulator export the AWS_ENDPOINT_URL_MGN that `mgn-cutover simulate` prints)"
            )
            return AccountError(err.code, str(err).partition(": ")[2] + hint)
        return err

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
            page, problems = check_items(
                await self._page("DescribeSourceServers", params), self._check_item
            )
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
                page = await self._call("describe_source_servers", **params)
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
            page = await self._call("describe_source_servers", **params)
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
            page = await self._page("ListManagedAccounts", params)
            for item in page.get("items") or []:
                account = text(mapping(item).get("accountId"))
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
        when the answer had no readable server: a 200 status line is MGN's acceptance even
        when its body is not JSON or was cut short).

        Raises MisattributedError when the answer names another server (it is not this call's
        answer: the call may or may not have gone through), other MgnError subclasses for the
        failed call.
        """
        answer = await self._send(
            "FinalizeCutover",
            {"sourceServerID": server_id, **self._account()},
            unreadable_2xx_is_none=True,
        )
        if isinstance(answer, dict) and answer.get("sourceServerID", server_id) != server_id:
            named = _one_line(repr(answer.get("sourceServerID")))[:80]
            why = f"FinalizeCutover for {server_id} was answered 200 for {named}: not its answer"
            raise MisattributedError("MisattributedAnswer", why, 200)
        if not isinstance(answer, dict) or self._check_answer(answer) is not None:
            return None  # accepted, but off-model: the reconciler reads the server instead
        return parse_server(answer)

    async def start_cutover(self, server_ids: Sequence[str]) -> JobView | None:
        """StartCutover for at most 200 servers: launches their cutover instances (one job).
        Returns the job as created (None if the answer had none). Raises MgnError subclasses;
        a quota refusal is a RequestRejectedError with code ServiceQuotaExceededException."""
        if len(server_ids) > MAX_IDS_PER_DESCRIBE:
            raise ValueError(f"at most {MAX_IDS_PER_DESCRIBE} IDs per job, got {len(server_ids)}")
        answer = await self._call(
            "start_cutover", sourceServerIDs=list(server_ids), **self._account()
        )
        return parse_job(mapping(answer.get("job")))

    async def describe_jobs(
        self, job_ids: Sequence[str] = (), from_date: str | None = None
    ) -> list[JobView]:
        """DescribeJobs by job IDs (or every job since `from_date`), all pages."""
        filters: dict[str, Any] = {}
        if job_ids:
            filters["jobIDs"] = list(job_ids)
        if from_date:
            filters["fromDate"] = from_date
        params: dict[str, Any] = {"filters": filters, "maxResults": 1000, **self._account()}
        jobs: list[JobView] = []
        while True:
            page = await self._call("describe_jobs", **params)
            for item in page.get("items") or []:
                job = parse_job(mapping(item))
                if job is not None:
                    jobs.append(job)
            if not page.get("nextToken"):
                return jobs
            params["nextToken"] = page["nextToken"]

    async def revert_to_ready(self, server_id: str) -> ServerView | None:
        """ChangeServerLifeCycleState to READY_FOR_CUTOVER: the console's "revert". Returns
        the server as MGN's answer shows it after the change (None if the answer had none)."""
        answer = await self._call(
            "change_server_life_cycle_state",
            sourceServerID=server_id,
            lifeCycle={"state": "READY_FOR_CUTOVER"},
            **self._account(),
        )
        view = parse_server(answer) if isinstance(answer, dict) else None
        return view if view is not None and view.source_server_id == server_id else None

    async def terminate_instances(self, server_ids: Sequence[str]) -> None:
        """TerminateTargetInstances for at most 200 servers (refused before a revert)."""
        await self._call(
            "terminate_target_instances",
            sourceServerIDs=list(server_ids),
            **self._account(),
        )

    async def archive(self, server_id: str) -> None:
        """MarkAsArchived (only from CUTOVER or DISCONNECTED)."""
        await self._call("mark_as_archived", sourceServerID=server_id, **self._account())

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
            page = await self._call(operation, **params)
            items.extend(i for i in page.get("items") or [] if isinstance(i, dict))
            if not page.get("nextToken"):
                return items
            params["nextToken"] = page["nextToken"]

    async def instance_status(self, instance_ids: Sequence[str]) -> dict[str, dict[str, str]]:
        """EC2 DescribeInstanceStatus for at most 100 instances: {id: {state, system, instance}}.

        Instances EC2 does not report are absent from the answer.
        """
        result: dict[str, dict[str, str]] = {}
        params: dict[str, Any] = {"InstanceIds": list(instance_ids), "IncludeAllInstances": True}
        while True:
            page = await self._invoke(self._ec2_client, "describe_instance_status", params)
            for st in page.get("InstanceStatuses") or []:
                result[str(st.get("InstanceId"))] = {
                    "state": str((st.get("InstanceState") or {}).get("Name", "unknown")),
                    "system": str((st.get("SystemStatus") or {}).get("Status", "unknown")),
                    "instance": str((st.get("InstanceStatus") or {}).get("Status", "unknown")),
                }
            if not page.get("NextToken"):
                return result
            params["NextToken"] = page["NextToken"]
