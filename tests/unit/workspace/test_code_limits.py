"""The limits and network a job gets from the server's policy and its own request, how a
failure caused by a limit is explained (``workspace/code_limits.py``), and the argument vectors
that enforce them per containment (``workspace/processes.py``; docs/security.md#limits)."""

from __future__ import annotations

import json
import resource
import signal
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mlgrid.errors import InvalidField
from mlgrid.workspace.code_limits import NETWORK_API, NETWORK_HOST, CodePolicy, Limits, explain_limit
from mlgrid.workspace.processes import BUBBLEWRAP, UNSAFE, USER, Command, Containment, Sandbox, contained_argv

MIB = 1 << 20
optional_mb = st.none() | st.integers(min_value=1, max_value=1 << 16)


@given(server=optional_mb, asked=optional_mb)
def test_a_job_gets_the_default_or_less_never_more(server: int | None, asked: int | None) -> None:
    policy = CodePolicy(memory_bytes=server * MIB if server else None)
    if server is not None and asked is not None and asked > server:
        with pytest.raises(InvalidField) as info:
            policy.job(asked, None, None)
        assert info.value.field_name == "resources.memoryMb"
        return
    limits, network = policy.job(asked, None, None)
    expected = asked if asked is not None else server
    assert limits.memory_bytes == (expected * MIB if expected is not None else None)
    assert network == "api"


def test_cpu_seconds_and_network_follow_the_same_rule() -> None:
    policy = CodePolicy(job_cpu_seconds=60, job_network="none")
    assert policy.job(None, None, None) == (Limits(None, 60), "none")
    assert policy.job(None, 5, "host") == (Limits(None, 5), "host")
    with pytest.raises(InvalidField) as info:
        policy.job(None, 61, None)
    assert info.value.field_name == "resources.cpuSeconds"
    assert CodePolicy(memory_bytes=MIB, job_cpu_seconds=60).scoring() == Limits(MIB, None)


def test_limits_become_rlimits() -> None:
    assert Limits().rlimits() == []
    assert Limits(300 * MIB, 2).rlimits() == [
        (resource.RLIMIT_AS, 300 * MIB, 300 * MIB),
        (resource.RLIMIT_CPU, 2, 3),  # SIGXCPU at 2 s, SIGKILL at 3 s
    ]


@pytest.mark.parametrize(
    ("code", "limits", "log", "expected"),
    [
        (-signal.SIGXCPU, Limits(cpu_seconds=2), "", "it reached its CPU time limit (2 s)"),
        (128 + signal.SIGXCPU, Limits(cpu_seconds=2), "", "it reached its CPU time limit (2 s)"),
        (-signal.SIGKILL, Limits(cpu_seconds=2), "", "it reached its CPU time limit (2 s)"),
        (-signal.SIGXCPU, Limits(), "", None),
        (1, Limits(memory_bytes=300 * MIB), "Traceback...\nMemoryError\n",
         "it ran out of its memory limit (300 MiB of address space)"),
        (1, Limits(memory_bytes=300 * MIB), "ValueError: no\n", None),
        (1, Limits(), "MemoryError\n", None),
        (0, Limits(300 * MIB, 2), "MemoryError\n", None),
    ],
)
def test_a_failure_is_blamed_on_a_limit_only_when_it_matches(
    code: int, limits: Limits, log: str, expected: str | None
) -> None:
    assert explain_limit(code, limits, log) == expected


def test_the_network_namespace_and_the_relay_are_asked_for_only_where_possible(tmp_path: Path) -> None:
    sandbox = Sandbox(tmp_path / "box")
    command = Command(["true"], {}, tmp_path / "log", network=NETWORK_API)
    root = Containment(USER, tmp_path, api_port=8780)
    user_mode = contained_argv(root, Sandbox(tmp_path / "box", 1_500_000_001, 1_500_000_001), command)
    plan = json.loads(user_mode[4])
    assert plan["network"] == "api" and plan["uid"] == 1_500_000_001
    assert str(root.api_socket) in user_mode and "8780" in user_mode  # the relay, then the command
    bubblewrap = Containment(BUBBLEWRAP, tmp_path, bubblewrap="bwrap", api_port=8780)
    wrapped = contained_argv(bubblewrap, sandbox, command)
    assert "--share-net" not in wrapped and str(root.api_socket) in wrapped
    host = contained_argv(bubblewrap, sandbox, Command(["true"], {}, tmp_path / "log", network=NETWORK_HOST))
    assert "--share-net" in host and str(root.api_socket) not in host
    unsafe = contained_argv(Containment(UNSAFE, tmp_path, api_port=8780), sandbox, command)
    assert str(root.api_socket) not in unsafe and json.loads(unsafe[4])["network"] == "host"
