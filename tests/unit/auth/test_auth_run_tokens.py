"""Run tokens: a job's credential for its own run, signed, never stored."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from mlgrid.auth import run_tokens
from mlgrid.auth.run_tokens import RunGrant

KEY = run_tokens.derive_key(b"k" * 32)
names = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_", min_size=1, max_size=64)


@given(workspace=names, run_id=names)
def test_a_token_verifies_to_its_own_grant(workspace: str, run_id: str) -> None:
    token = run_tokens.issue(KEY, RunGrant(workspace, run_id))
    assert token.startswith(run_tokens.RUN_TOKEN_PREFIX)
    assert run_tokens.verify(KEY, token) == RunGrant(workspace.lower(), run_id)


@given(workspace=names, run_id=names, position=st.integers(min_value=0), char=st.sampled_from("AbZ09-_."))
def test_any_change_to_a_token_is_refused(workspace: str, run_id: str, position: int, char: str) -> None:
    token = run_tokens.issue(KEY, RunGrant(workspace, run_id))
    index = len(run_tokens.RUN_TOKEN_PREFIX) + position % (len(token) - len(run_tokens.RUN_TOKEN_PREFIX))
    if token[index] == char:
        return
    altered = token[:index] + char + token[index + 1:]
    assert run_tokens.verify(KEY, altered) is None


def test_another_key_or_garbage_is_refused() -> None:
    token = run_tokens.issue(KEY, RunGrant("ws", "run_1"))
    assert run_tokens.verify(run_tokens.derive_key(b"x" * 32), token) is None
    for garbage in ("", "mlgrun_", "mlgrun_.", "mlgrun_abc", "mlg_" + token[7:], token + "x", "mlgrun_%%.%%"):
        assert run_tokens.verify(KEY, garbage) is None


def test_the_signing_key_is_derived_not_the_secret_key() -> None:
    secret = b"s" * 32
    assert run_tokens.derive_key(secret) != secret
    assert len(run_tokens.derive_key(secret)) == 32
