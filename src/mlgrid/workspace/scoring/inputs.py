"""Scoring request bodies in, predictions out (runs inside the scoring process).

Accepted bodies for models scored without an entry script (scikit-learn, MLflow):

* a JSON list of rows: ``[[5.1, 3.5, 1.4, 0.2], ...]`` or ``[{"sepal_length": 5.1, ...}, ...]``;
  a flat list of scalars is one row;
* an object with the rows under ``data`` (Azure ML v1), ``input_data`` (Azure ML v2),
  ``instances`` / ``inputs`` (TF Serving, MLflow) or ``dataframe_records``; or a pandas
  "split" frame (``{"columns": [...], "data": [...]}``) under ``input_data`` or
  ``dataframe_split``. With several models deployed, ``"model": "name:version"`` picks one.

The answer is ``{"predictions": [...]}``. Rows given as lists get the model's own column
names (``feature_names_in_``) when it has them, so a model fitted on a DataFrame is fed the
frame it expects.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

ROW_KEYS = ("data", "input_data", "instances", "inputs", "dataframe_records", "dataframe_split")


class InputError(ValueError):
    """The request body cannot be turned into model input (answered with 400)."""


@dataclass(frozen=True)
class ScoringInput:
    """What a request asks to score: rows (list of lists, list of objects or a split frame)
    and, with several models deployed, which one."""

    rows: Any
    model: str | None = None


def parse_json(body: bytes) -> Any:
    if not body.strip():
        raise InputError('the request body is empty; send JSON rows, e.g. {"data": [[1, 2, 3]]}')
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InputError(f"the request body is not JSON: {exc}") from exc


def scoring_input(payload: Any) -> ScoringInput:
    """Find the rows in a decoded body (see the module docstring for the accepted shapes)."""
    if isinstance(payload, list):
        return ScoringInput(payload)
    if not isinstance(payload, Mapping):
        raise InputError('send a JSON list of rows or an object with the rows under "data"')
    model = payload.get("model")
    if model is not None and not isinstance(model, str):
        raise InputError("\"model\" must be a string 'name:version'")
    if "columns" in payload and "data" in payload:
        return ScoringInput({k: payload[k] for k in ("columns", "data", "index") if k in payload}, model)
    present = [key for key in ROW_KEYS if key in payload]
    if len(present) > 1:
        raise InputError(f"give the rows under one key only, not {', '.join(present)}")
    if present:
        return ScoringInput(payload[present[0]], model)
    raise InputError(f"no rows found: put them under one of {', '.join(ROW_KEYS)}")


def _is_split(rows: Any) -> bool:
    return isinstance(rows, Mapping) and "columns" in rows and "data" in rows


def frame_or_array(rows: Any, feature_names: Sequence[str] | None) -> Any:
    """A pandas DataFrame (named columns) or a 2-D numpy array for ``model.predict``."""
    import numpy as np
    import pandas as pd

    if _is_split(rows):
        try:
            return pd.DataFrame(rows["data"], columns=rows["columns"], index=rows.get("index"))
        except (ValueError, TypeError) as exc:
            raise InputError(f"the split frame is malformed: {exc}") from exc
    if isinstance(rows, Mapping):
        rows = [rows]  # one record
    if not isinstance(rows, list) or not rows:
        raise InputError("the rows must be a non-empty JSON list")
    if all(isinstance(row, Mapping) for row in rows):
        frame = pd.DataFrame.from_records(rows)
        if feature_names is not None:
            missing = [name for name in feature_names if name not in frame.columns]
            if missing:
                raise InputError(f"the rows lack the model's columns {', '.join(map(str, missing[:10]))}")
            frame = frame[list(feature_names)]
        return frame
    if any(isinstance(row, Mapping) for row in rows):
        raise InputError("the rows mix objects and lists; use one form")
    if not any(isinstance(row, list) for row in rows):
        rows = [rows]  # a flat list of scalars is one row
    elif not all(isinstance(row, list) for row in rows):
        raise InputError("every row must be a list of values")
    widths = {len(row) for row in rows}
    if len(widths) != 1:
        raise InputError(f"the rows have different lengths ({', '.join(map(str, sorted(widths)))})")
    if feature_names is not None:
        if widths != {len(feature_names)}:
            raise InputError(
                f"the model takes {len(feature_names)} values per row "
                f"({', '.join(map(str, list(feature_names)[:10]))}); got {widths.pop()}"
            )
        return pd.DataFrame(rows, columns=list(feature_names))
    try:
        return np.asarray(rows)
    except ValueError as exc:
        raise InputError(f"the rows are not a table of values: {exc}") from exc


def _default(value: Any) -> Any:
    for attribute in ("tolist", "to_dict"):
        convert = getattr(value, attribute, None)
        if callable(convert):
            return convert() if attribute == "tolist" else convert(orient="records")
    item = getattr(value, "item", None)
    if callable(item):
        return item()
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def encode(value: Any) -> bytes:
    """JSON for a model's or script's result: numpy arrays and scalars, pandas objects and
    sets become lists and numbers; NaN becomes null."""
    return orjson.dumps(value, default=_default, option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS)


def predictions(result: Any) -> bytes:
    return encode({"predictions": result})


def error_body(code: str, message: str) -> bytes:
    return encode({"error": {"code": code, "message": message, "details": []}})
