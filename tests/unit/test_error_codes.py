"""Error codes are named, not typed out: every raise site uses ``ErrorCode``.

A code is part of the API (clients match on it), so a misspelt literal would silently be a new
code. This reads ``src/mlgrid`` with ``ast`` and fails on a string constant given as an error
code: ``code="..."`` in a call, ``code: str = "..."`` in an error class, the first argument of
``ErrorDetail(...)``, or the code argument of the publish parser's ``problems.add(...)``.
"""

from __future__ import annotations

import ast
from pathlib import Path

from mlgrid.domain.error_codes import ErrorCode
from mlgrid.errors import BadRequest, InvalidField, NotFound, invalid

SOURCE = Path(__file__).resolve().parents[2] / "src" / "mlgrid"


def _is_string(node: ast.expr | None) -> bool:
    return isinstance(node, ast.Constant) and isinstance(node.value, str)


def literal_codes(tree: ast.AST) -> list[int]:
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            if any(k.arg == "code" and _is_string(k.value) for k in node.keywords):
                lines.append(node.lineno)
            if name == "ErrorDetail" and node.args and _is_string(node.args[0]):
                lines.append(node.lineno)
            if name == "add" and len(node.args) == 3 and _is_string(node.args[1]):
                value = node.args[1].value  # type: ignore[attr-defined]
                if value in ErrorCode.__members__.values():
                    lines.append(node.lineno)
        if (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and node.target.id == "code"
            and _is_string(node.value)
        ):
            lines.append(node.lineno)
    return lines


def test_no_error_code_is_a_string_literal() -> None:
    found = []
    for path in sorted(SOURCE.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        found += [f"{path.relative_to(SOURCE)}:{line}" for line in literal_codes(tree)]
    assert found == []


def test_the_check_sees_a_literal_code() -> None:
    tree = ast.parse('raise NotFound("x", code="RunNotFound")\nErrorDetail("InvalidJson", "m")\n')
    assert literal_codes(tree) == [1, 2]


def test_codes_are_unique_and_spelt_as_their_value() -> None:
    values = [code.value for code in ErrorCode]
    assert len(values) == len(set(values))
    for code in ErrorCode:
        assert code.name == "".join(f"_{c}" if c.isupper() else c.upper() for c in code.value).lstrip("_")


def test_a_member_is_its_string_in_the_error_envelope() -> None:
    body = NotFound("gone", code=ErrorCode.RUN_NOT_FOUND).as_json()
    assert body == {"error": {"code": "RunNotFound", "message": "gone", "details": []}}
    assert BadRequest("bad").code == "BadRequest"
    error = invalid("properties.x", "must be 1-30")
    assert isinstance(error, InvalidField)
    assert error.as_json()["error"] == {
        "code": "InvalidRequest",
        "message": "properties.x: must be 1-30",
        "details": [
            {"code": "InvalidRequest", "message": "properties.x: must be 1-30", "target": "properties.x"}
        ],
    }
