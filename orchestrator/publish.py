"""Copy a wave's report files to S3, encrypted at rest, without ever failing the run.

Layout: every regular file of the wave's report folder goes to
`s3://<bucket>/<prefix><wave>/<file name>`, or `s3://<bucket>/<prefix><wave>/<run_id>/<file name>`
when a run ID is given (one folder per run, nothing overwritten). report.json is uploaded last,
so whoever watches for it finds the other files already there.

Each object is written with server-side encryption: SSE-S3 (AES256), or SSE-KMS with the given
key. `publish_report` never raises for S3 or local trouble: it returns a `PublishResult` saying
what was uploaded, or why not; the caller logs it and the run's exit code does not change.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aioboto3
import structlog
from aiobotocore.config import AioConfig

from orchestrator.mgn import translate

log = structlog.get_logger(__name__)

CONTENT_TYPES = {
    ".json": "application/json",
    ".md": "text/markdown; charset=utf-8",
    ".csv": "text/csv; charset=utf-8",
    ".html": "text/html; charset=utf-8",
}
_LAST = "report.json"
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_IPV4 = re.compile(r"\d+\.\d+\.\d+\.\d+")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_SECRET_VALUES = re.compile(r"\b(AKIA|ASIA)[A-Z0-9]{16}\b")
_MAX_KEY_BYTES = 1024


@dataclass(frozen=True)
class PublishResult:
    """What `publish_report` did: the objects written, and why it stopped if it did."""

    uri: str
    uploaded: tuple[str, ...] = ()
    not_uploaded: tuple[str, ...] = ()
    error: str | None = None

    @property
    def ok(self) -> bool:
        """True when every report file was uploaded."""
        return self.error is None

    def summary(self) -> str:
        """One line for the run's summary and log."""
        if self.ok:
            return f"report uploaded to {self.uri} ({len(self.uploaded)} files)"
        total = len(self.uploaded) + len(self.not_uploaded)
        return (
            f"report NOT uploaded to {self.uri}: {self.error} "
            f"({len(self.uploaded)} of {total} files uploaded)"
        )


def parse_report_uri(text: str) -> tuple[str, str]:
    """(bucket, key prefix) of `s3://bucket/prefix/`; the prefix is "" or ends with "/".

    A missing trailing slash is added (`s3://b/reports` means the folder `reports/`).
    Raises ValueError saying what is wrong: not s3://, a bad bucket name, a query, fragment,
    user info or port, or an empty folder name (`//`) in the prefix.
    """
    raw = text.strip()
    parts = urlsplit(raw)
    if parts.scheme != "s3":
        raise ValueError(f"report_uri {raw!r} must start with s3://")
    if parts.query or parts.fragment or "@" in parts.netloc or ":" in parts.netloc:
        raise ValueError(f"report_uri {raw!r}: only s3://bucket/prefix/, no ?query, #, @ or port")
    bucket = parts.netloc
    if not _BUCKET.fullmatch(bucket) or ".." in bucket or _IPV4.fullmatch(bucket):
        raise ValueError(
            f"report_uri {raw!r}: {bucket!r} is not an S3 bucket name (3-63 lowercase letters, "
            "digits, dots and hyphens, starting and ending with a letter or digit)"
        )
    prefix = parts.path.lstrip("/")
    if prefix and not prefix.endswith("/"):
        prefix += "/"
    if "//" in prefix:
        raise ValueError(f"report_uri {raw!r}: empty folder name ('//') in the prefix")
    return bucket, prefix


def report_keys(
    prefix: str, wave: str, names: Sequence[str], run_id: str | None = None
) -> list[str]:
    """The object key of each file name, in the documented layout.

    Raises ValueError if the wave or run ID is not a plain name, or a key exceeds 1024 bytes.
    """
    folder = prefix + _plain(wave, "wave") + "/"
    if run_id is not None:
        folder += _plain(run_id, "run ID") + "/"
    keys = [folder + name for name in names]
    for key in keys:
        if len(key.encode()) > _MAX_KEY_BYTES:
            raise ValueError(f"S3 key {key[:80]!r}... is longer than {_MAX_KEY_BYTES} bytes")
    return keys


def _plain(value: str, what: str) -> str:
    if not _NAME.fullmatch(value) or value in (".", ".."):
        raise ValueError(f"{what} {value!r} cannot be an S3 folder name")
    return value


def report_files(folder: Path) -> list[Path]:
    """The report files of a folder: regular, not hidden, not symlinks; report.json last.

    Raises OSError if the folder cannot be listed.
    """
    files = [
        p
        for p in folder.iterdir()
        if not p.name.startswith(".") and not p.is_symlink() and p.is_file()
    ]
    return sorted(files, key=lambda p: (p.name == _LAST, p.name))


async def publish_report(
    folder: Path,
    report_uri: str,
    wave: str,
    *,
    kms_key_id: str | None = None,
    run_id: str | None = None,
    region: str | None = None,
    profile: str | None = None,
    endpoint_url: str | None = None,
    timeout_s: float = 120.0,
) -> PublishResult:
    """Upload every report file of `folder` to `report_uri`, encrypted; never raises for S3.

    `endpoint_url` is for S3 only (None: boto3's own, including AWS_ENDPOINT_URL_S3). The whole
    upload is bounded by `timeout_s`. Only CancelledError (and other BaseExceptions) escape.
    """
    try:
        bucket, prefix = parse_report_uri(report_uri)
        files = report_files(folder)
        keys = report_keys(prefix, wave, [p.name for p in files], run_id)
    except (ValueError, OSError) as exc:
        return PublishResult(report_uri, error=_reason(exc))
    uri = f"s3://{bucket}/{keys[0].rsplit('/', 1)[0]}/" if keys else report_uri
    if not files:
        return PublishResult(uri, error=f"no report files in {folder}")
    uploaded: list[str] = []
    try:
        async with asyncio.timeout(timeout_s):
            await _upload(files, bucket, keys, kms_key_id, region, profile, endpoint_url, uploaded)
    except TimeoutError:
        error = f"timed out after {timeout_s:g}s"
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # noqa: BLE001 -- publishing must never fail the run
        error = _reason(exc)
    else:
        return PublishResult(uri, tuple(uploaded))
    return PublishResult(uri, tuple(uploaded), tuple(keys[len(uploaded) :]), error)


async def _upload(
    files: Sequence[Path],
    bucket: str,
    keys: Sequence[str],
    kms_key_id: str | None,
    region: str | None,
    profile: str | None,
    endpoint_url: str | None,
    uploaded: list[str],
) -> None:
    """Put each file in turn, appending each key to `uploaded` once S3 has it; stop at a failure."""
    session = aioboto3.Session(profile_name=profile, region_name=region)
    config = AioConfig(
        retries={"mode": "standard", "total_max_attempts": 3},
        connect_timeout=5,
        read_timeout=30,
    )
    encryption: dict[str, Any] = (
        {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": kms_key_id}
        if kms_key_id
        else {"ServerSideEncryption": "AES256"}
    )
    async with session.client("s3", endpoint_url=endpoint_url, config=config) as s3:
        for path, key in zip(files, keys, strict=True):
            body = await asyncio.to_thread(path.read_bytes)
            content_type = CONTENT_TYPES.get(path.suffix, "application/octet-stream")
            await s3.put_object(
                Bucket=bucket, Key=key, Body=body, ContentType=content_type, **encryption
            )
            log.debug("report_file_uploaded", bucket=bucket, key=key, size_bytes=len(body))
            uploaded.append(key)


def _reason(exc: BaseException) -> str:
    """Why, in one line: S3's error code and message, or the local error; no key IDs."""
    if isinstance(exc, ValueError):
        text = str(exc)
    elif isinstance(exc, OSError) and not type(exc).__module__.startswith("botocore"):
        text = f"{type(exc).__name__}: {exc.strerror or exc}"
    else:
        text = str(translate(exc))
    return _SECRET_VALUES.sub("***", " ".join(text.split()))[:500]
