"""The launched instances in EC2: real ones on moto when an EC2 endpoint is set, else invented IDs.

With `endpoint_url` (moto in server mode, never real AWS: the credentials are dummies), each
launch job calls RunInstances once for the servers whose launch will succeed, StopInstances at
once for those whose first boot will fail, and TerminateTargetInstances calls TerminateInstances.
The instances exist from the StartCutover call on; MGN shows their IDs only when the launch is
due (jobs.py). Without an endpoint the IDs are invented: `i-` + 17 hex digits, as are those of
servers a fixture seeds as already launched (those have no EC2 instance; terminating them only
clears MGN's record). RunInstances runs in a worker thread (moto takes about 1.5 s for 200
instances) while the emulator goes on serving; Stop/TerminateInstances are quick and run inline.

Accounts: moto files a request under the account in its `x-moto-account-id` header (unless the
moto process has MOTO_ACCOUNT_ID set, which wins). Servers of an explicit account A are launched
with that header, so a client holding credentials of a role assumed in A (moto's STS) sees them.
Servers of the emulator's default account (requests without accountID) are launched without the
header, into moto's default account 123456789012: the one plain dummy credentials see.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from orchestrator.emulator import state
from orchestrator.emulator.errors import ApiError

IMAGE_ID = "ami-12c6146b"
MANAGED_TAG = {"Key": "AWSApplicationMigrationServiceManaged", "Value": "mgn.amazonaws.com"}
INSTANCE_TYPE = "m5.large"
DUMMY_KEY = "testing"


class Ec2:
    """RunInstances / StopInstances / TerminateInstances against one EC2 endpoint (moto)."""

    def __init__(self, endpoint_url: str, default_account_id: str) -> None:
        self.endpoint_url = endpoint_url
        self._default_account_id = default_account_id
        self._clients: dict[str | None, Any] = {}
        self._lock = threading.Lock()
        # Instances this adapter ran: a fixture's seeded IDs exist only in MGN's records.
        self.launched: set[str] = set()

    def _client(self, account_id: str | None) -> Any:
        key = None if account_id in (None, self._default_account_id) else account_id
        with self._lock:
            return self._clients.get(key) or self._new_client(key)

    def _new_client(self, key: str | None) -> Any:
        import boto3
        from botocore.config import Config

        client = boto3.client(
            "ec2",
            endpoint_url=self.endpoint_url,
            region_name=state.REGION,
            aws_access_key_id=DUMMY_KEY,
            aws_secret_access_key=DUMMY_KEY,
            config=Config(retries={"total_max_attempts": 1}),
        )
        if key is not None:
            client.meta.events.register("before-send.ec2.*", _pin_account(key))
        self._clients[key] = client
        return client

    def _call(self, account_id: str | None, op: str, **kwargs: Any) -> Any:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return getattr(self._client(account_id), op)(**kwargs)
        except (BotoCoreError, ClientError) as exc:
            raise ApiError(
                "InternalServerException",
                f"EC2 at {self.endpoint_url} refused {op}: {exc}",
            ) from exc

    def launch(self, account_id: str | None, job_id: str, count: int) -> list[str]:
        """Run `count` instances for a launch job; their IDs in launch order."""
        if count == 0:
            return []
        out = self._call(
            account_id,
            "run_instances",
            ImageId=IMAGE_ID,
            InstanceType=INSTANCE_TYPE,
            MinCount=count,
            MaxCount=count,
            TagSpecifications=[
                {
                    "ResourceType": "instance",
                    "Tags": [
                        MANAGED_TAG,
                        {"Key": "mgn-emulator:jobID", "Value": job_id},
                    ],
                }
            ],
        )
        ids = [str(i["InstanceId"]) for i in out["Instances"]]
        with self._lock:
            self.launched.update(ids)
        return ids

    def warm_up(self, account_ids: list[str | None]) -> None:
        """Make moto build each account's EC2 backend now (about a second each), not during the
        first StartCutover, which holds the emulator's loop while it calls EC2."""
        for account_id in account_ids:
            self._call(account_id, "describe_instances", MaxResults=5)

    def run(self, account_id: str | None, job_id: str, boots: list[bool]) -> list[str]:
        """A launch job's instances, one per entry of `boots`; those whose entry is False are
        stopped at once (their first boot fails). Thread-safe: StartCutover calls it from a
        worker thread."""
        ids = self.launch(account_id, job_id, len(boots))
        self.stop(account_id, [i for i, ok in zip(ids, boots, strict=True) if not ok])
        return ids

    def stop(self, account_id: str | None, instance_ids: list[str]) -> None:
        """Stop instances this adapter ran (a failed first boot); others are skipped."""
        ours = [i for i in instance_ids if i in self.launched]
        if ours:
            self._call(account_id, "stop_instances", InstanceIds=ours)

    def terminate(self, account_id: str | None, instance_ids: list[str]) -> None:
        """Terminate instances this adapter ran (TerminateTargetInstances); others are skipped."""
        ours = [i for i in instance_ids if i in self.launched]
        if ours:
            self._call(account_id, "terminate_instances", InstanceIds=ours)

    def close(self) -> None:
        for client in self._clients.values():
            client.close()
        self._clients.clear()


def _pin_account(account_id: str) -> Callable[..., None]:
    def add_header(request: Any, **_: Any) -> None:
        request.headers["x-moto-account-id"] = account_id

    return add_header
