"""The lean calls (`orchestrator.wire`): signed as botocore signs, errors read as botocore reads
them. The calls themselves go over HTTP to the emulator in every run test; these pin the two
places where the lean path re-does what botocore does."""

from __future__ import annotations

import datetime
import json
import os
import threading
from pathlib import Path
from typing import Any

import botocore.auth
import botocore.session
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.parsers import RestJSONParser

from orchestrator.errors import ConflictError, RetryableError, ThrottledError
from orchestrator.mgn import ClientSettings, MgnClient, translate_response
from orchestrator.sessions import AwsSession
from orchestrator.wire import error_response, sign, signing_key

AK = "AKIAWIRETEST00000001"
SK = "wireTestSecret/0000000000000000000000000"
WHEN = datetime.datetime(2026, 11, 28, 23, 59, 58)
SERVER, ROLE_ACCOUNT = "s-1234567890abcdef0", "222222222222"


def _botocore_authorization(
    monkeypatch: pytest.MonkeyPatch, url: str, body: bytes, token: str | None, region: str
) -> str:
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda: WHEN)
    request = AWSRequest(
        method="POST", url=url, data=body, headers={"Content-Type": "application/json"}
    )
    SigV4Auth(Credentials(AK, SK, token), "mgn", region).add_auth(request)
    return str(request.headers["Authorization"])


def _ours(url: str, body: bytes, token: str | None, region: str) -> str:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    host = parts.netloc.removesuffix(":443") if parts.scheme == "https" else parts.netloc
    amz_date = WHEN.strftime("%Y%m%dT%H%M%SZ")
    headers = {"Content-Type": "application/json", "X-Amz-Date": amz_date}
    if token:
        headers["X-Amz-Security-Token"] = token
    return sign(
        method="POST",
        host=host,
        path=parts.path,
        headers=headers,
        body=body,
        amz_date=amz_date,
        access_key=AK,
        key=signing_key(SK, amz_date[:8], region, "mgn"),
        scope=f"{amz_date[:8]}/{region}/mgn/aws4_request",
    )


@pytest.mark.parametrize(
    ("url", "token", "region"),
    [
        ("https://mgn.us-east-1.amazonaws.com/FinalizeCutover", None, "us-east-1"),
        (
            "https://mgn.eu-west-1.amazonaws.com/DescribeSourceServers",
            "FwoGZXIvYXdzE//tok+en=",
            "eu-west-1",
        ),
        ("http://127.0.0.1:41234/FinalizeCutover", "session  token with  spaces", "us-west-2"),
    ],
)
def test_the_signature_is_botocores(
    monkeypatch: pytest.MonkeyPatch, url: str, token: str | None, region: str
) -> None:
    """Same request, same instant, same credentials: the same Authorization header."""
    body = json.dumps({"sourceServerID": "s-1234567890abcdef0", "accountID": "111122223333"})
    ours = _ours(url, body.encode(), token, region)
    assert ours == _botocore_authorization(monkeypatch, url, body.encode(), token, region)
    # And it is not a check that cannot fail: another body signs differently.
    assert ours != _ours(url, body.encode() + b" ", token, region)


def _botocore_error(status: int, headers: dict[str, str], body: bytes) -> dict[str, Any]:
    model = botocore.session.get_session().get_service_model("mgn")
    shape = model.operation_model("FinalizeCutover").output_shape
    parsed: dict[str, Any] = RestJSONParser().parse(
        {"status_code": status, "headers": headers, "body": body}, shape
    )
    return parsed


WIRE_ERRORS = [
    (409, {"x-amzn-ErrorType": "ConflictException:http://internal/"},
     b'{"message": "Server is not CUTTING_OVER", "code": "STATE_MISMATCH"}'),
    (409, {}, b'{"message": "no header", "code": "STATE_MISMATCH"}'),
    (429, {"x-amzn-ErrorType": "ThrottlingException", "Retry-After": "3"},
     b'{"message": "Rate exceeded"}'),
    (500, {}, b"<html>gateway</html>"),
    (400, {}, b'{"__type": "com.amazon#ValidationException", "message": "bad"}'),
    (403, {"x-amzn-ErrorType": "AccessDeniedException"}, b'{"Message": "nope"}'),
    (502, {}, b""),
    (404, {"x-amzn-ErrorType": "ResourceNotFoundException"}, b"<not json>"),
    (429, {}, b'{"message": "no code at all"}'),
]  # fmt: skip


@pytest.mark.parametrize(("status", "headers", "body"), WIRE_ERRORS)
def test_an_error_answer_reads_as_botocore_reads_it(
    status: int, headers: dict[str, str], body: bytes
) -> None:
    """Code and message as botocore's REST-JSON parser gives them, so errors translate alike."""
    ours = error_response(status, headers, body)
    theirs = _botocore_error(status, {k.lower(): v for k, v in headers.items()}, body)
    assert ours["Error"]["Code"] == theirs["Error"]["Code"]
    assert ours["Error"]["Message"] == theirs["Error"]["Message"]
    mine, botos = translate_response(ours), translate_response(theirs)
    assert (type(mine), str(mine), getattr(mine, "retry_after_s", None)) == (
        type(botos), str(botos), getattr(botos, "retry_after_s", None))  # fmt: skip


def test_what_the_translated_errors_mean() -> None:
    """The header's code wins over the body's state code; Retry-After is honoured."""
    conflict = translate_response(error_response(*WIRE_ERRORS[0]))
    assert isinstance(conflict, ConflictError)
    throttled = translate_response(error_response(*WIRE_ERRORS[2]))
    assert isinstance(throttled, ThrottledError) and throttled.retry_after_s == 3.0


async def test_a_profiles_assumed_role_refreshes_off_the_event_loop(
    emulator: Any, moto_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An assume-role profile (botocore's own refreshable credentials, through moto's STS): the
    lean calls carry the role's keys (the emulator reads its account's server), and each
    refresh, the first and one due mid-run, runs in a thread, never in the event loop."""
    Path(os.environ["AWS_CONFIG_FILE"]).write_text(
        "[profile base]\nregion = us-east-1\n[profile roled]\n"
        f"role_arn = arn:aws:iam::{ROLE_ACCOUNT}:role/R\nsource_profile = base\n"
    )
    Path(os.environ["AWS_SHARED_CREDENTIALS_FILE"]).write_text(
        f"[base]\naws_access_key_id = {AK}\naws_secret_access_key = {SK}\n"
    )
    monkeypatch.setenv("AWS_ENDPOINT_URL_STS", moto_url)
    server = {"sourceServerID": SERVER, "applicationID": "app-1234567890abcdef0"}
    emulator.seed({"servers": [{**server, "accountID": ROLE_ACCOUNT, "state": "CUTTING_OVER"}]})
    threads: list[threading.Thread] = []
    session = AwsSession("roled", "us-east-1")
    credentials = (await session.plain()).get_credentials()  # not fetched yet: deferred
    fetch = credentials._refresh_using

    def fetch_recorded() -> Any:
        threads.append(threading.current_thread())
        return fetch()

    credentials._refresh_using = fetch_recorded
    settings = ClientSettings(region="us-east-1", profile="roled", endpoint_url=emulator.url)
    async with MgnClient(settings, session=session) as client:
        assert [v.source_server_id for v in await client.describe([SERVER])] == [SERVER]
        credentials._expiry_time = datetime.datetime.now(datetime.UTC) + datetime.timedelta(
            minutes=5
        )  # as if the night had gone on for 55 minutes
        assert [v.source_server_id for v in await client.describe([SERVER])] == [SERVER]
    assert len(threads) == 2 and threading.main_thread() not in threads


async def test_a_proxy_sends_the_lean_calls_through_aiobotocores_session(
    emulator: Any, fake_credentials: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a proxy for MGN's URL the lean calls go through aiobotocore's HTTP session (made at
    once), so through the proxy: an unreachable one fails as botocore's ProxyConnectionError,
    naming the endpoint, and nothing reaches MGN."""
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    settings = ClientSettings(region="us-east-1", endpoint_url=emulator.url)
    async with MgnClient(settings) as client:
        with pytest.raises(RetryableError) as failed:
            await client.finalize("s-1234567890abcdef0")
    assert failed.value.code == "ProxyConnectionError"
    assert emulator.url in str(failed.value)
    assert emulator.calls("FinalizeCutover") == 0
