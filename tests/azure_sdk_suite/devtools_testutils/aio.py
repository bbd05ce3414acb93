"""Stand-in for the async recording decorator: live only."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any

from devtools_testutils import _accepted


def recorded_by_proxy_async(test: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    async def record_wrap(*args: Any, **kwargs: Any) -> Any:
        return await test(*args, **_accepted(test, kwargs))

    functools.update_wrapper(record_wrap, test)
    return record_wrap
