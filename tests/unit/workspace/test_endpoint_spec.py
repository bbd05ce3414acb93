"""Parsing deployment bodies and scoring inputs (pure): rejections name their field."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import numpy as np
import pandas as pd
import pytest

from mlgrid.errors import InvalidField
from mlgrid.workspace.endpoint_spec import DEFAULT_STARTUP_TIMEOUT, ModelRef, parse_endpoint_body
from mlgrid.workspace.scoring import inputs
from mlgrid.workspace.scoring.inputs import InputError


def _body(**properties: Any) -> dict[str, Any]:
    return {"properties": {"computeType": "Local", **properties}}


def test_a_full_body() -> None:
    spec = parse_endpoint_body(
        _body(
            models=["churn:3", "encoder:1"],
            entryScript="src/score.py",
            tags={"a": 1},
            properties={"p": "v"},
            startupTimeoutSeconds=Decimal("2.5"),
        )
    )
    assert spec.compute_type == "Local"
    assert spec.models == (ModelRef("churn", 3), ModelRef("encoder", 1))
    assert spec.entry_script is not None
    assert (spec.entry_script.path, spec.entry_script.file_name) == ("src/score.py", "score.py")
    assert spec.tags == {"a": 1} and spec.properties == {"p": "v"}
    assert spec.startup_timeout == 2.5


def test_defaults_and_script_forms() -> None:
    spec = parse_endpoint_body({"properties": {"models": ["m01:1"], "computeType": "local"}})
    assert spec.compute_type == "Local" and spec.entry_script is None
    assert spec.startup_timeout == DEFAULT_STARTUP_TIMEOUT
    source = "def init():\n    pass\ndef run(raw_data):\n    return raw_data\n"
    inline = parse_endpoint_body(_body(entryScript={"fileName": "s.py", "source": source}))
    assert inline.entry_script is not None and inline.entry_script.source == source
    assert inline.entry_script.file_name == "s.py" and inline.models == ()
    bare = parse_endpoint_body(_body(entryScript=source))
    assert bare.entry_script is not None and bare.entry_script.inline and bare.entry_script.raw == source


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (None, "properties"),
        ([], "body"),
        ({"properties": []}, "properties"),
        ({"properties": {}, "extra": 1}, "extra"),
        (_body(computeType="ACI", models=["m01:1"]), "properties.computeType"),
        (_body(computeType=None, models=["m01:1"], replicas=1), "properties.replicas"),
        (_body(models=["m01"]), "properties.models[0]"),
        (_body(models=["m01:0"]), "properties.models[0]"),
        (_body(models=["m:1"]), "properties.models[0]"),
        (_body(models=[1]), "properties.models[0]"),
        (_body(models=["m01:1", "M01:1"]), "properties.models[1]"),
        (_body(models=[f"m{i:02}:1" for i in range(33)]), "properties.models"),
        (_body(models=[]), "properties.models"),
        (_body(entryScript="/abs/score.py"), "properties.entryScript"),
        (_body(entryScript="a/../score.py"), "properties.entryScript"),
        (_body(entryScript="score.txt"), "properties.entryScript"),
        (_body(entryScript={"source": ""}), "properties.entryScript.source"),
        (_body(entryScript={"source": "x\n", "fileName": "../s.py"}), "properties.entryScript.fileName"),
        (_body(entryScript={"source": "x\n", "path": "s.py"}), "properties.entryScript.path"),
        (_body(models=["m01:1"], tags="x"), "properties.tags"),
        (_body(models=["m01:1"], properties={"k": 1}), "properties.properties.k"),
        (_body(models=["m01:1"], startupTimeoutSeconds=True), "properties.startupTimeoutSeconds"),
        (_body(models=["m01:1"], startupTimeoutSeconds=4000), "properties.startupTimeoutSeconds"),
    ],
)
def test_rejections_name_the_field(body: Any, field: str) -> None:
    with pytest.raises(InvalidField) as error:
        parse_endpoint_body(body)
    assert error.value.field_name == field
    assert field in error.value.message


@pytest.mark.parametrize(
    ("payload", "rows", "model"),
    [
        ([[1, 2]], [[1, 2]], None),
        ({"data": [[1, 2]]}, [[1, 2]], None),
        ({"input_data": [[1, 2]], "model": "m:1"}, [[1, 2]], "m:1"),
        ({"instances": [[1, 2]]}, [[1, 2]], None),
        ({"columns": ["a"], "data": [[1]]}, {"columns": ["a"], "data": [[1]]}, None),
    ],
)
def test_where_the_rows_are(payload: Any, rows: Any, model: str | None) -> None:
    found = inputs.scoring_input(payload)
    assert (found.rows, found.model) == (rows, model)


@pytest.mark.parametrize(
    "payload", [3, "rows", {"rows": [[1]]}, {"data": [[1]], "inputs": [[1]]}, {"data": [[1]], "model": 1}]
)
def test_bodies_without_rows(payload: Any) -> None:
    with pytest.raises(InputError):
        inputs.scoring_input(payload)


def test_model_input_shapes() -> None:
    assert inputs.frame_or_array([1, 2, 3], None).tolist() == [[1, 2, 3]]  # a flat list is one row
    framed = inputs.frame_or_array([[1, 2]], ["a", "b"])
    assert isinstance(framed, pd.DataFrame) and list(framed.columns) == ["a", "b"]
    records = inputs.frame_or_array([{"b": 2, "a": 1, "c": 9}], ["a", "b"])
    assert records.to_dict(orient="records") == [{"a": 1, "b": 2}]
    split = inputs.frame_or_array({"columns": ["a"], "data": [[1], [2]], "index": [5, 6]}, None)
    assert list(split.index) == [5, 6]
    for bad, features in (
        ([], None),
        ([[1], [1, 2]], None),
        ([[1, 2, 3]], ["a", "b"]),
        ([{"a": 1}], ["a", "b"]),
        ([{"a": 1}, [1]], None),
    ):
        with pytest.raises(InputError):
            inputs.frame_or_array(bad, features)


def test_results_become_json() -> None:
    assert inputs.predictions(np.array([1, 2])) == b'{"predictions":[1,2]}'
    assert inputs.encode({"x": np.float64("nan"), "s": pd.Series([1.5]), "t": (1, 2)}) == (
        b'{"x":null,"s":[1.5],"t":[1,2]}'
    )
