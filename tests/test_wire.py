"""The lean calls (`orchestrator.wire`): signed as botocore signs, errors read as botocore reads
them. The calls themselves go over HTTP to the emulator in every run test; these pin the two
places where the lean path re-does what botocore does."""

from __future__ import annotations

import datetime
import json
from typing import Any

import botocore.auth
import botocore.session
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.parsers import RestJSONParser

from orchestrator.errors import ConflictError, ThrottledError
from orchestrator.mgn import translate_response
from orchestrator.wire import error_response, sign, signing_key

AK = "AKIAWIRETEST00000001"
SK = "wireTestSecret/0000000000000000000000000"
WHEN = datetime.datetime(2026, 11, 28, 23, 59, 58)


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
        ("https://mgn.eu-west-1.amazonaws.com/DescribeSourceServers", "FwoGZXIvYXdzE//tok+en=", "eu-west-1"),  # noqa: E501
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
