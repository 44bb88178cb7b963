"""Which MGN endpoint a command talks to, where that setting came from, and the rehearsal rule.

boto3 reads `AWS_ENDPOINT_URL_MGN` (then `AWS_ENDPOINT_URL`) by itself, so a rehearsal against
the emulator could look like production in its report, and the other services a run calls (EC2
for `--verify-instances`, S3 for `report_uri`, SNS for notifications) would still go to real AWS.
Here the endpoint is resolved once, with its source, so that reports record it, errors name it,
and a rehearsal refuses to reach real AWS for anything else.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from urllib.parse import urlsplit

from orchestrator import configvalues as cv
from orchestrator.config import Config
from orchestrator.errors import ConfigError, Diagnostic

# Hosts of real AWS endpoints (commercial, China, the newer dual-stack names).
_AWS_SUFFIXES = (".amazonaws.com", ".amazonaws.com.cn", ".api.aws")


@dataclass(frozen=True)
class Endpoint:
    """The MGN endpoint a command uses: None means real AWS, chosen by boto3 from the region."""

    url: str | None
    source: str | None  # `--endpoint-url`, `env AWS_ENDPOINT_URL_MGN`, `file:line:col`, ...

    @property
    def is_emulator(self) -> bool:
        """Set, and not an AWS host: a rehearsal."""
        return self.url is not None and not is_aws_url(self.url)

    def describe(self) -> str:
        """`http://127.0.0.1:8080 (from AWS_ENDPOINT_URL_MGN)`, or what an unset one means."""
        if self.url is None:
            return "real AWS (AWS_ENDPOINT_URL_MGN, --endpoint-url and endpoint_url are unset)"
        return f"{self.url} (from {self.source_name})"

    @property
    def source_name(self) -> str:
        """The setting a person would change: the variable, the flag or the config key."""
        source = self.source or "endpoint_url"
        return source.removeprefix("env ")


def is_aws_url(url: str) -> bool:
    """Whether the URL's host is a real AWS endpoint."""
    host = (urlsplit(url).hostname or "").lower()
    return host.endswith(_AWS_SUFFIXES) or host in {s.lstrip(".") for s in _AWS_SUFFIXES}


def mgn_endpoint(config: Config, environ: Mapping[str, str]) -> Endpoint:
    """The MGN endpoint as boto3 would choose it: our setting, else the AWS variables.

    Raises ConfigError naming the variable when it is not an http(s) URL with a host.
    """
    if config.endpoint_url:
        origin = config.origin("endpoint_url") or "endpoint_url"
        if origin.startswith("env ") or origin.startswith("--"):
            return Endpoint(config.endpoint_url, origin)
        return Endpoint(config.endpoint_url, f"endpoint_url in {origin}")
    for name in ("AWS_ENDPOINT_URL_MGN", "AWS_ENDPOINT_URL"):
        if environ.get(name):
            try:
                return Endpoint(cv.endpoint_url(environ[name]), f"env {name}")
            except cv.Invalid as err:
                shown = f"{environ[name]!r} " if err.echo else ""
                message = f"the MGN endpoint {shown}is not {err.expected}"
                raise ConfigError([Diagnostic(name, 0, 0, message)]) from err
    return Endpoint(None, None)


def resolved(config: Config, environ: Mapping[str, str]) -> tuple[Config, Endpoint]:
    """The config with the MGN endpoint made explicit (so reports record it), and the endpoint."""
    endpoint = mgn_endpoint(config, environ)
    if endpoint.url is None or config.endpoint_url:
        return config, endpoint
    origins = (*config.origins, ("endpoint_url", endpoint.source or ""))
    return replace(config, endpoint_url=endpoint.url, origins=origins), endpoint


def other_services(config: Config, *, verify_instances: bool) -> dict[str, str]:
    """AWS services this command would call besides MGN: {service: the setting that needs it}."""
    needed: dict[str, str] = {}
    if verify_instances:
        needed["EC2"] = "--verify-instances"
    if config.report_uri:
        needed["S3"] = "report_uri"
    if config.notify_sns_topic_arn:
        needed["SNS"] = "notify_sns_topic_arn"
    return needed


def check_rehearsal(
    endpoint: Endpoint, needed: Mapping[str, str], environ: Mapping[str, str]
) -> None:
    """Refuse a rehearsal (MGN is an emulator) that would call real AWS for another service.

    Raises ConfigError naming each service, the setting that needs it and the variable to set.
    """
    if not endpoint.is_emulator:
        return
    problems = []
    for service, setting in needed.items():
        url = environ.get(f"AWS_ENDPOINT_URL_{service}") or environ.get("AWS_ENDPOINT_URL")
        if url and not is_aws_url(url):
            continue
        message = (
            f"MGN is an emulator ({endpoint.describe()}) but {setting} would call real AWS "
            f"{service}: set AWS_ENDPOINT_URL_{service} (or AWS_ENDPOINT_URL) to a local "
            f"endpoint, or drop {setting} for the rehearsal"
        )
        problems.append(Diagnostic(setting, 0, 0, message))
    if problems:
        raise ConfigError(problems)
