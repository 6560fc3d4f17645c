"""Joining a Ray cluster that uses token authentication: say so when the token is what is missing.

Ray 2.60 turns token authentication on for a cluster started where a token exists
(``~/.ray/auth_token``, made by any earlier local ``ray.init``). A client must then run with
``RAY_AUTH_MODE=token`` and the cluster's token (``RAY_AUTH_TOKEN``, ``RAY_AUTH_TOKEN_PATH``
or ``~/.ray/auth_token``); without it ``ray.init`` retries for about 20 s and reports a
connection failure. One GCS call answers in a second which of the two it is.
"""

from __future__ import annotations

import os

from tune_digits.errors import UserError

_HOW = (
    "export RAY_AUTH_MODE=token and the cluster's token "
    "(RAY_AUTH_TOKEN=..., as `ray get-auth-token` prints it on the head, or that file copied to ~/.ray/auth_token)"
)


def auth_error(address: str) -> UserError:
    """The one-line error for a cluster that refused this process's (missing or wrong) token."""
    mode = os.environ.get("RAY_AUTH_MODE", "").lower()
    if mode != "token":
        return UserError(
            f"the Ray cluster at {address!r} is reachable but requires an authentication token "
            f"(RAY_AUTH_MODE is {mode or 'unset'} here); {_HOW}"
        )
    return UserError(f"the Ray cluster at {address!r} is reachable but refused this token; {_HOW}")


def is_auth_failure(exc: BaseException) -> bool:
    return type(exc).__name__ == "AuthenticationError" or "InvalidAuthToken" in str(exc)


def check_auth(address: str, timeout: float = 3.0) -> None:
    """Raise :func:`auth_error` when the GCS at ``address`` (``HOST:PORT``) rejects this process's token.

    Anything else (success, a wrong cluster id, an old Ray without tokens) is left to ``ray.init``.
    """
    if "://" in address:
        return  # ray:// (Ray Client) authenticates on its own connection
    try:
        from ray._raylet import GcsClient
    except ImportError:
        return
    try:
        # A made-up cluster id skips the handshake that ray.init retries; the GCS checks the token first.
        GcsClient(address=address, cluster_id="00" * 28).internal_kv_get(b"tune-digits-probe", None, timeout=timeout)
    except Exception as exc:  # noqa: BLE001 - only an authentication failure is ours to report
        if "InvalidAuthToken" in str(exc):
            raise auth_error(address) from None
