"""Publishing reports to S3 on moto's server: keys, encryption, and failures that never raise."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from orchestrator.publish import PublishResult, parse_report_uri, publish_report, report_keys

FILES = {
    "report.json": '{"schema": "mgn-cutover/report/v1"}\n',
    "report.md": "# report\n",
    "report.csv": "sourceServerID\n",
    "report.html": "<!DOCTYPE html>\n",
}


@pytest.fixture
def report_folder(tmp_path: Path) -> Path:
    """A wave's report folder with four report files, a temp file and a symlink to skip."""
    folder = tmp_path / "wave-01"
    folder.mkdir()
    for name, text in FILES.items():
        (folder / name).write_text(text)
    (folder / ".report.json.abc.tmp").write_text("half")
    (folder / "link.md").symlink_to(folder / "report.md")
    return folder


@pytest.fixture
def s3(moto_url: str, fake_credentials: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Any:
    """A boto3 S3 client on moto; AWS_ENDPOINT_URL points the code under test there too."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_url)
    return boto3.client("s3", endpoint_url=moto_url)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("s3://my-bucket/reports/", ("my-bucket", "reports/")),
        ("s3://my-bucket/a/b", ("my-bucket", "a/b/")),
        ("s3://my.bucket", ("my.bucket", "")),
        (" s3://my-bucket/ ", ("my-bucket", "")),
    ],
)
def test_parse_report_uri(text: str, expected: tuple[str, str]) -> None:
    """A report_uri gives bucket and a prefix ending in '/' (or empty)."""
    assert parse_report_uri(text) == expected


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("https://my-bucket/x/", "must start with s3://"),
        ("my-bucket/x", "must start with s3://"),
        ("s3://My_Bucket/x/", "is not an S3 bucket name"),
        ("s3://ab/x/", "is not an S3 bucket name"),
        ("s3://192.168.1.1/x/", "is not an S3 bucket name"),
        ("s3://my-bucket/x/?versionId=1", "no ?query"),
        ("s3://key:secret@my-bucket/x/", "no ?query, #, @ or port"),
        ("s3://my-bucket/a//b/", "empty folder name"),
    ],
)
def test_parse_report_uri_says_why_it_refuses(text: str, why: str) -> None:
    """A bad report_uri raises ValueError naming the problem."""
    with pytest.raises(ValueError, match=why.replace("?", r"\?")):
        parse_report_uri(text)


def test_report_keys_layout() -> None:
    """Keys are prefix + wave + (run ID) + file name; names that could escape are refused."""
    assert report_keys("r/", "wave-01", ["report.json"]) == ["r/wave-01/report.json"]
    assert report_keys("", "w", ["a.md"], run_id="run-1") == ["w/run-1/a.md"]
    for bad in ("..", "a/b", ""):
        with pytest.raises(ValueError, match="cannot be an S3 folder name"):
            report_keys("r/", bad, ["x"])


async def test_upload_lands_with_keys_and_aes256(s3: Any, report_folder: Path) -> None:
    """Every report file lands under prefix/wave/, SSE-S3 encrypted, typed, report.json last."""
    s3.create_bucket(Bucket="night-reports")
    result = await publish_report(report_folder, "s3://night-reports/mgn/", "wave-01")
    assert result.ok, result
    assert result.uri == "s3://night-reports/mgn/wave-01/"
    assert result.uploaded == (
        "mgn/wave-01/report.csv",
        "mgn/wave-01/report.html",
        "mgn/wave-01/report.md",
        "mgn/wave-01/report.json",
    )
    listed = s3.list_objects_v2(Bucket="night-reports")["Contents"]
    assert sorted(o["Key"] for o in listed) == sorted(result.uploaded)
    for key in result.uploaded:
        head = s3.head_object(Bucket="night-reports", Key=key)
        assert head["ServerSideEncryption"] == "AES256"
        body = s3.get_object(Bucket="night-reports", Key=key)["Body"].read().decode()
        assert body == FILES[key.rsplit("/", 1)[1]]
    head = s3.head_object(Bucket="night-reports", Key="mgn/wave-01/report.html")
    assert head["ContentType"] == "text/html; charset=utf-8"
    assert result.summary() == "report uploaded to s3://night-reports/mgn/wave-01/ (4 files)"


async def test_upload_with_kms_key(s3: Any, report_folder: Path) -> None:
    """With a KMS key ID, each object is written aws:kms with that key, under the run's folder."""
    s3.create_bucket(Bucket="night-reports")
    key_id = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
    result = await publish_report(
        report_folder, "s3://night-reports", "wave-01", kms_key_id=key_id, run_id="run-7"
    )
    assert result.ok, result
    assert result.uploaded[-1] == "wave-01/run-7/report.json"
    head = s3.head_object(Bucket="night-reports", Key="wave-01/run-7/report.json")
    assert head["ServerSideEncryption"] == "aws:kms"
    assert head["SSEKMSKeyId"] == key_id


async def test_missing_bucket_is_a_result_not_an_exception(s3: Any, report_folder: Path) -> None:
    """A bucket that does not exist: failed, with S3's reason, nothing uploaded, nothing raised."""
    result = await publish_report(report_folder, "s3://no-such-bucket/x/", "wave-01")
    assert not result.ok
    assert result.error is not None and result.error.startswith("NoSuchBucket")
    assert result.uploaded == () and len(result.not_uploaded) == 4
    assert result.summary().startswith("report NOT uploaded to s3://no-such-bucket/x/wave-01/")
    assert "(0 of 4 files uploaded)" in result.summary()


@pytest.fixture
def denied_credentials(
    s3: Any, moto_url: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[dict[str, str]]:
    """Credentials of an IAM user allowed nothing, with moto enforcing IAM for the test."""
    from moto.core.authorization import enable_iam_authentication

    iam = boto3.client("iam", endpoint_url=moto_url)
    iam.create_user(UserName="nobody")
    made = iam.create_access_key(UserName="nobody")["AccessKey"]
    creds = {
        "AWS_ACCESS_KEY_ID": made["AccessKeyId"],
        "AWS_SECRET_ACCESS_KEY": made["SecretAccessKey"],
    }
    for name, value in creds.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_SESSION_TOKEN")
    with enable_iam_authentication():
        yield creds


async def test_access_denied_is_a_result_without_credentials(
    s3: Any, report_folder: Path, denied_credentials: dict[str, str]
) -> None:
    """Access denied: failed with S3's reason; the key ID and secret appear nowhere in it."""
    result = await publish_report(report_folder, "s3://night-reports/x/", "wave-01")
    assert not result.ok
    assert result.error is not None and result.error.startswith("AccessDenied"), result.error
    for secret in denied_credentials.values():
        assert secret not in repr(result) and secret not in result.summary()


async def test_unreachable_endpoint_is_bounded(report_folder: Path, fake_credentials: Any) -> None:
    """S3 that cannot be reached: failed within the time limit, with a reason, nothing raised."""
    started = time.monotonic()
    result = await publish_report(
        report_folder,
        "s3://night-reports/x/",
        "wave-01",
        endpoint_url="http://127.0.0.1:9",
        timeout_s=5,
    )
    assert time.monotonic() - started < 6
    assert not result.ok and result.error, result
    assert result.not_uploaded[-1] == "x/wave-01/report.json"


async def test_local_problems_are_results(tmp_path: Path) -> None:
    """A bad URI, a missing folder or an empty one: a failed result, never an exception."""
    result = await publish_report(tmp_path, "http://x/", "wave-01")
    assert result == PublishResult(
        "http://x/", error="report_uri 'http://x/' must start with s3://"
    )
    missing = await publish_report(tmp_path / "nope", "s3://bucket/", "wave-01")
    assert missing.error is not None and missing.error.startswith("FileNotFoundError")
    empty = await publish_report(tmp_path, "s3://bucket/", "wave-01")
    assert empty.error == f"no report files in {tmp_path}"
