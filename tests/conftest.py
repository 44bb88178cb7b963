"""Shared fixtures: no test reads the developer's AWS setup or reaches real AWS."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

FAKE_REGION = "us-east-1"


@pytest.fixture(autouse=True)
def isolated_aws_env(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Clear every AWS_* variable and point AWS config and credentials at empty files.

    HOME and XDG_STATE_HOME point at a fresh folder too, so the default state_dir of a command
    (and anything else written under the home folder) never lands in the developer's home.
    """
    for name in list(os.environ):
        if name.startswith(("AWS_", "MGN_CUTOVER_", "XDG_")):
            monkeypatch.delenv(name, raising=False)
    user_home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(user_home))
    monkeypatch.setenv("XDG_STATE_HOME", str(user_home / ".local" / "state"))
    home = tmp_path_factory.mktemp("aws")
    (home / "config").write_text("")
    (home / "credentials").write_text("")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(home / "config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(home / "credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


@pytest.fixture
def fake_credentials(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Distinctive fake credentials and a region, for clients that talk to the emulator or moto."""
    creds = {
        "AWS_ACCESS_KEY_ID": "AKIAFAKETESTKEY00001",
        "AWS_SECRET_ACCESS_KEY": "fakeSecretKeyDoNotLeak0000000000000000000",
        "AWS_SESSION_TOKEN": "fakeSessionTokenDoNotLeak000000",
        "AWS_DEFAULT_REGION": FAKE_REGION,
    }
    for k, v in creds.items():
        monkeypatch.setenv(k, v)
    return creds


@pytest.fixture(scope="session")
def moto_server() -> Iterator[str]:
    """moto in server mode (EC2, STS, S3, DynamoDB); `mock_aws` cannot serve aioboto3."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture
def moto_url(moto_server: str) -> Iterator[str]:
    """moto's endpoint, reset after the test so no state leaks between tests."""
    import urllib.request

    yield moto_server
    urllib.request.urlopen(urllib.request.Request(f"{moto_server}/moto-api/reset", method="POST"))


@pytest.fixture
def work_dir(tmp_path: Path) -> Path:
    """A scratch folder for plans, reports and state."""
    return tmp_path


@pytest.fixture
def emulator() -> Iterator[object]:
    """A running MGN emulator with no servers (tests seed what they need); yields its handle.

    AWS_ENDPOINT_URL_MGN is not set: tests pass `endpoint_url=emulator.url` or set it themselves.
    """
    from orchestrator.emulator.testing import running_emulator

    with running_emulator() as handle:
        yield handle


class FakeClock:
    """A clock that only moves when told: `clock()` reads it, `clock.advance(s)` moves it."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def fake_clock() -> FakeClock:
    """A fake monotonic clock for unit tests of timing (no real sleeps)."""
    return FakeClock()


@pytest.fixture
def make_mgn_client(fake_credentials: dict[str, str]) -> Iterator[object]:
    """A factory of boto3 MGN clients with botocore retries off, all closed after the test."""
    import boto3
    from botocore.config import Config

    clients = []

    def make(endpoint_url: str | None = None, **config: object) -> object:
        settings: dict[str, object] = {"retries": {"total_max_attempts": 1}, **config}
        client = boto3.client("mgn", endpoint_url=endpoint_url, config=Config(**settings))
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()
