"""The AWS sessions behind the MGN clients of one profile, or of one assumed role.

botocore's own session gives the lean calls (`wire`) their endpoint, settings and credentials;
aioboto3's, for every other call, is made on first need (importing aioboto3, aiobotocore and
aiohttp costs ~0.2 s, which a run whose calls are all lean never pays).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import botocore.config
import botocore.session

from orchestrator.validation import data_loader

Loader = Callable[[botocore.session.Session], Any]


def default_loader(session: botocore.session.Session) -> Any:
    """The data loader for a botocore session: without a data_path, the process's own (the one
    plan validation already read botocore's partition data with); with one, the session's."""
    if session.get_config_variable("data_path") is None:
        return data_loader()
    return session.get_component("data_loader")


class AwsSession:
    """The AWS sessions behind the clients of one profile, or of one assumed role.

    botocore's own session gives the lean calls (`wire`) their endpoint, settings and
    credentials; aioboto3's, for every other call, is made on first need. An assumed role's
    credentials are aiobotocore's (refreshed by an async AssumeRole), so its clients are
    aiobotocore's from the start.
    """

    def __init__(
        self,
        profile: str | None = None,
        region: str | None = None,
        *,
        assumed: Any = None,
        loader: Loader = default_loader,
    ) -> None:
        """`assumed`: an aioboto3 Session holding an assumed role's credentials."""
        self.profile, self.region = profile, region
        self.assumed = assumed is not None
        self._aio: Any = assumed
        self._loader = loader
        self._plain: botocore.session.Session | None = None
        self._resolving = asyncio.Lock()
        self._resolved = False
        self._clients: dict[tuple[Any, ...], list[Any]] = {}  # `describing_client`: [it, holders]

    async def plain(self) -> botocore.session.Session:
        """botocore's session of the profile, its credentials resolved: in a thread, as
        botocore's chain may ask a container or instance endpoint or run a credential process.
        Raises botocore's errors (ProfileNotFound, CredentialRetrievalError, ...)."""
        if self._plain is None:
            session = botocore.session.Session(profile=self.profile)
            if self.region is not None:
                session.set_config_variable("region", self.region)
            session.register_component("data_loader", self._loader(session))
            self._plain = session
        if not self._resolved:
            async with self._resolving:  # one resolution per session, however many clients
                if not self._resolved:
                    await asyncio.to_thread(self._plain.get_credentials)
                    self._resolved = True
        return self._plain

    async def describing_client(
        self, region: str | None, endpoint_url: str | None, config: dict[str, Any]
    ) -> Any:
        """botocore's MGN client for these settings, made once and shared by every (account,
        region) reached with them (the global view's accounts of one region): it never sends,
        it only gives `wire` the endpoint, settings and credentials. Each caller gives it back
        with `release`; the last one closes it."""
        key = (region, endpoint_url, repr(sorted(config.items())))
        session = await self.plain()  # first: the accounts open at once and all wait here
        found = self._clients.get(key)
        if found is None:
            client = session.create_client(
                "mgn", region_name=region, endpoint_url=endpoint_url,
                config=botocore.config.Config(**config),
            )  # fmt: skip
            found = self._clients[key] = [client, 0]
        found[1] += 1
        return found[0]

    def release(self, client: Any) -> None:
        """Give back a client from `describing_client`; closed when nobody holds it."""
        for key, found in list(self._clients.items()):
            if found[0] is client:
                found[1] -= 1
                if found[1] <= 0:
                    del self._clients[key]
                    client.close()
                return

    def aio(self) -> Any:
        """aioboto3's Session of the profile (the assumed role's one as given), made once."""
        if self._aio is None:
            import aioboto3  # ~0.2 s with aiobotocore and aiohttp: only for a call that needs it

            session = aioboto3.Session(profile_name=self.profile, region_name=self.region)
            session._session.register_component("data_loader", self._loader(session._session))
            self._aio = session
        return self._aio
