"""Stand-in for Azure's ``devtools_testutils``, enough to run azure-eventgrid's tests live.

See ``tests/azure_sdk_suite/README.md``. Environment:

* ``MLGRID_SDK_SUITE_CREDENTIAL``: ``key`` or ``token``;
* ``MLGRID_SDK_SUITE_TOKEN``: the principal's token in ``token`` mode;
* ``EVENTGRID_*``: endpoints, keys and names, as Azure's live pipeline sets them.
"""

from __future__ import annotations

import functools
import inspect
import os
from collections.abc import Callable
from typing import Any

import pytest
from azure.core.credentials import AzureKeyCredential

__all__ = [
    "AzureMgmtRecordedTestCase",
    "AzureRecordedTestCase",
    "EnvironmentVariableLoader",
    "add_body_key_sanitizer",
    "add_body_regex_sanitizer",
    "add_general_string_sanitizer",
    "add_header_regex_sanitizer",
    "add_oauth_response_sanitizer",
    "recorded_by_proxy",
    "test_proxy",
]

# Which key authorises which endpoint (the variables Azure's pipeline sets in pairs).
_ENDPOINT_KEYS = (
    ("EVENTGRID_TOPIC_ENDPOINT", "EVENTGRID_TOPIC_KEY"),
    ("EVENTGRID_CLOUD_EVENT_TOPIC_ENDPOINT", "EVENTGRID_CLOUD_EVENT_TOPIC_KEY"),
    ("EVENTGRID_CUSTOM_EVENT_TOPIC_ENDPOINT", "EVENTGRID_CUSTOM_EVENT_TOPIC_KEY"),
    ("EVENTGRID_PARTNER_NAMESPACE_TOPIC_ENDPOINT", "EVENTGRID_PARTNER_NAMESPACE_TOPIC_KEY"),
    ("EVENTGRID_ENDPOINT", "EVENTGRID_KEY"),
)


def _mode() -> str:
    return os.environ.get("MLGRID_SDK_SUITE_CREDENTIAL", "key")


def _key_for(endpoint: str) -> str:
    for endpoint_variable, key_variable in _ENDPOINT_KEYS:
        if os.environ.get(endpoint_variable, "").rstrip("/") == endpoint.rstrip("/"):
            return os.environ[key_variable]
    raise LookupError(f"no EVENTGRID_* key is set for the endpoint {endpoint!r}")


class AzureRecordedTestCase:
    """What the SDK's test classes inherit: credentials and client construction."""

    def get_credential(self, client_class: type, **kwargs: Any) -> Any:
        if _mode() == "token":
            from mlgrid.client.azure_credential import AsyncMlgridTokenCredential, MlgridTokenCredential

            token = os.environ["MLGRID_SDK_SUITE_TOKEN"]
            is_async = ".aio" in client_class.__module__
            return AsyncMlgridTokenCredential(token) if is_async else MlgridTokenCredential(token)
        return AzureKeyCredential(os.environ["EVENTGRID_TOPIC_KEY"])

    def create_client_from_credential(self, client_class: type, credential: Any, **kwargs: Any) -> Any:
        if isinstance(credential, AzureKeyCredential) and "endpoint" in kwargs:
            credential = AzureKeyCredential(_key_for(kwargs["endpoint"]))
        return client_class(credential=credential, **kwargs)


class AzureMgmtRecordedTestCase(AzureRecordedTestCase):
    pass


def _keep_own_signature(wrapper: Callable[..., Any], test: Callable[..., Any]) -> Callable[..., Any]:
    """Copy name, marks and docstring, but let pytest see only ``self`` as an argument (the
    real harness passes the environment values itself, not as fixtures)."""
    functools.update_wrapper(wrapper, test)
    del wrapper.__wrapped__  # type: ignore[attr-defined]
    self_only = [p for p in inspect.signature(test).parameters.values() if p.name == "self"]
    wrapper.__signature__ = inspect.Signature(self_only)  # type: ignore[attr-defined]
    return wrapper


def _accepted(test: Callable[..., Any], kwargs: dict[str, Any]) -> dict[str, Any]:
    parameters = inspect.signature(test).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return kwargs
    return {k: v for k, v in kwargs.items() if k in parameters}


def recorded_by_proxy(test: Callable[..., Any]) -> Callable[..., Any]:
    """Live only: call the test with the keyword arguments it accepts."""
    def record_wrap(*args: Any, **kwargs: Any) -> Any:
        return test(*args, **_accepted(test, kwargs))

    functools.update_wrapper(record_wrap, test)
    return record_wrap


class EnvironmentVariableLoader:
    """``EventGridPreparer``: passes each named value from the environment (upper-cased name),
    falling back to the fake default the preparer declares."""

    def __init__(self, directory: str, **defaults: str) -> None:
        self.defaults = defaults

    def _values(self) -> dict[str, str]:
        return {name: os.environ.get(name.upper(), fake) for name, fake in self.defaults.items()}

    def __call__(self, test: Callable[..., Any]) -> Callable[..., Any]:
        if inspect.iscoroutinefunction(test):
            async def async_wrapper(self_: Any) -> Any:
                return await test(self_, **self._values())

            return _keep_own_signature(async_wrapper, test)

        def wrapper(self_: Any) -> Any:
            return test(self_, **self._values())

        return _keep_own_signature(wrapper, test)


@pytest.fixture(scope="session")
def test_proxy() -> None:
    """The real fixture starts the recording proxy; a live run needs none."""


def _no_recording(*_args: Any, **_kwargs: Any) -> None:
    """Sanitizers and matchers shape recordings; a live run records nothing."""


add_general_string_sanitizer = _no_recording
add_body_key_sanitizer = _no_recording
add_header_regex_sanitizer = _no_recording
add_oauth_response_sanitizer = _no_recording
add_body_regex_sanitizer = _no_recording
