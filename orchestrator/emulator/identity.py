"""Whose call is it: the caller's account from its access key, as AWS attributes it.

Keys issued by STS AssumeRole belong to the role's account. The emulator consults moto's STS
when moto runs in its own process (tests, `simulate`), and keys registered with `register`
(`POST /_emulator/identities`). Any other key is the management account's (the emulator's
default account, 111111111111), which may use the global view (`accountID`) for every account.
A member account's caller sees only its own account: another `accountID`, or
ListManagedAccounts, is answered AccessDeniedException.
"""

from __future__ import annotations

import re

from orchestrator.emulator.errors import ApiError

_CREDENTIAL = re.compile(r"Credential=([A-Z0-9]{16,128})/")


def access_key_of(authorization: str | None) -> str | None:
    """The access key ID a SigV4 `Authorization` header names, or None."""
    found = _CREDENTIAL.search(authorization or "")
    return found.group(1) if found else None


class Identities:
    """Access key -> the account it belongs to (None: the management account)."""

    def __init__(self) -> None:
        self._known: dict[str, str] = {}

    def register(self, access_key: str, account_id: str) -> None:
        """Attribute `access_key` to `account_id` (a member account)."""
        self._known[access_key] = account_id

    def clear(self) -> None:
        self._known.clear()

    def account_of(self, access_key: str | None) -> str | None:
        """The member account the key belongs to, or None for the management account."""
        if access_key is None:
            return None
        known = self._known.get(access_key)
        return known if known is not None else _moto_assumed_account(access_key)


def _moto_assumed_account(access_key: str) -> str | None:
    """The account of the role moto's STS (in this process) issued `access_key` for, if any."""
    if not access_key.startswith("ASIA"):
        return None
    try:
        from moto.sts.models import sts_backends
    except ImportError:
        return None
    for regions in list(sts_backends.values()):
        for backend in list(regions.values()):
            role = backend.get_assumed_role_from_access_key(access_key)
            if role is not None:
                return str(role.account_id)
    return None


def scope(body: dict[str, object], op: str, member: str | None) -> None:
    """Hold a member account's call to its own account (in place): its data, nobody else's.

    Raises ApiError AccessDeniedException for another account's accountID, or for the
    management-only ListManagedAccounts.
    """
    if member is None:
        return
    if op == "ListManagedAccounts":
        raise ApiError(
            "AccessDeniedException",
            f"Account {member} is not the organization's management or delegated "
            "administrator account",
            code="AccessDeniedException",
        )
    asked = body.get("accountID")
    if asked is not None and asked != member:
        raise ApiError(
            "AccessDeniedException",
            f"Account {member} is not authorized to access account {asked}",
            code="AccessDeniedException",
        )
    body["accountID"] = member
