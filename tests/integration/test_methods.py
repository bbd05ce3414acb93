"""``OPTIONS`` and 405 name every method a path answers, for every path of the API."""

from __future__ import annotations

import re

from tests.support.server import ServerProcess


def _concrete(template: str) -> str:
    return re.sub(r"\{[^}]+\}", "abc1", template)


def test_options_and_405_list_every_method_of_every_path(sqlite_server: ServerProcess) -> None:
    with sqlite_server.client() as client:
        spec = client.get("/openapi.json").json()
        checked = 0
        for template, operations in spec["paths"].items():
            documented = {method.upper() for method in operations} | {"OPTIONS"}
            path = _concrete(template)
            options = client.request("OPTIONS", path)
            assert options.status_code == 204, (template, options.text)
            allowed = set(options.headers["Allow"].split(", "))
            assert documented <= allowed, (template, allowed)
            missing = sorted({"GET", "PUT", "POST", "PATCH", "DELETE"} - allowed)
            if missing:
                refused = client.request(missing[0], path)
                assert refused.status_code == 405, (template, missing[0], refused.text)
                assert set(refused.headers["Allow"].split(", ")) == allowed
                error = refused.json()["error"]
                assert error["code"] == "MethodNotAllowed" and missing[0] in error["message"]
            checked += 1
        assert checked > 40
