"""Run tokens: the credential a submitted job gets, good for its own run and nothing else.

A job must report to its run (metrics, artifacts, tags) without holding the submitter's token:
code that runs on the host must not be able to act as a person. The server therefore gives
each job ``MLGRID_TOKEN=mlgrun_<payload>.<mac>``, where the payload names the workspace and the
run, and the MAC is HMAC-SHA256 under a key derived from the server's secret key. Nothing is
stored: any node holding the same secret key verifies it, and rotating the secret key revokes
every run token. What such a token may do is decided in ``broker.access`` (read and write that
one run; everything else is 403).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from dataclasses import dataclass

RUN_TOKEN_PREFIX = "mlgrun_"
_KEY_LABEL = b"mlgrid run tokens v1"


def derive_key(secret_key: bytes) -> bytes:
    """The signing key of run tokens, derived one-way from the server's secret key."""
    return hmac.new(secret_key, _KEY_LABEL, hashlib.sha256).digest()


@dataclass(frozen=True)
class RunGrant:
    """What a run token grants: the run ``run_id`` of the workspace ``workspace`` (its key)."""

    workspace: str
    run_id: str


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def issue(key: bytes, grant: RunGrant) -> str:
    payload = _b64(json.dumps([grant.workspace.lower(), grant.run_id], separators=(",", ":")).encode())
    mac = _b64(hmac.new(key, payload.encode("ascii"), hashlib.sha256).digest())
    return f"{RUN_TOKEN_PREFIX}{payload}.{mac}"


def verify(key: bytes, token: str) -> RunGrant | None:
    """The grant of a genuine token; None for anything else (never raises on bad input)."""
    if not token.startswith(RUN_TOKEN_PREFIX):
        return None
    payload, _, mac = token[len(RUN_TOKEN_PREFIX):].partition(".")
    try:
        expected = _b64(hmac.new(key, payload.encode("ascii"), hashlib.sha256).digest())
        if not hmac.compare_digest(expected, mac):
            return None
        workspace, run_id = json.loads(_unb64(payload))
    except (ValueError, UnicodeError, TypeError):
        return None
    if not isinstance(workspace, str) or not isinstance(run_id, str):
        return None
    return RunGrant(workspace, run_id)
