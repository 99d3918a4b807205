"""The JSON payloads `mlflow models serve` accepts, parsed for `lobseq serve`.

    {"dataframe_split": {"columns": [...], "data": [[...], ...]}, "params": {...}}
    {"dataframe_records": [{col: value, ...}, ...], "params": {...}}

Rows stay the parsed JSON lists: the service converts only the rows and
columns the model reads, in one step (`float_block`), instead of building an
object DataFrame. Every problem is a `BadRequest` (an HTTP 4xx with a message).
"""

from __future__ import annotations

import json
import operator
import warnings
from itertools import chain

import numpy as np
import pandas as pd


class BadRequest(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def split_payload(rows: pd.DataFrame, columns: list[str], last: int) -> bytes:
    """The body a client sends: the last `last` rows of `columns` (plus `timestamp`, as text)
    as MLflow's `dataframe_split`, which `parse_payload` reads back."""
    recent = rows[[*columns, "timestamp"]].iloc[-last:]
    recent = recent.assign(timestamp=recent["timestamp"].astype(str))
    return json.dumps({"dataframe_split": {"columns": list(recent.columns),
                                           "data": recent.values.tolist()}}).encode()


def _reject_constant(name: str):
    raise BadRequest(400, f"{name} is not allowed: every value must be a finite number")


def parse_payload(body: bytes) -> tuple[list[str], list[list], dict]:
    """The two `mlflow models serve` JSON layouts → (columns, rows, params).

    Rows stay the parsed JSON lists: the service converts only the rows and
    columns it uses, in one step, instead of building an object DataFrame.
    """
    try:
        doc = json.loads(body, parse_constant=_reject_constant)
    except BadRequest:
        raise
    except (ValueError, UnicodeDecodeError) as e:
        raise BadRequest(400, f"malformed JSON: {e}") from None
    if not isinstance(doc, dict):
        raise BadRequest(400, "the body must be a JSON object with 'dataframe_split' or "
                              "'dataframe_records'")
    keys = [k for k in ("dataframe_split", "dataframe_records") if k in doc]
    unknown = sorted(set(doc) - {"dataframe_split", "dataframe_records", "params"})
    if len(keys) != 1 or unknown:
        raise BadRequest(400, "give exactly one of 'dataframe_split' or 'dataframe_records' "
                              "(and optionally 'params')" + (f"; unknown keys: {unknown}" if unknown else ""))
    params = doc.get("params") or {}
    if not isinstance(params, dict):
        raise BadRequest(400, "'params' must be an object")
    if keys[0] == "dataframe_split":
        split = doc["dataframe_split"]
        if not isinstance(split, dict) or not isinstance(split.get("columns"), list) \
                or not isinstance(split.get("data"), list):
            raise BadRequest(400, "'dataframe_split' needs 'columns' (list) and 'data' (list of rows)")
        columns, rows = split["columns"], split["data"]
        if not all(isinstance(c, str) for c in columns) or len(set(columns)) != len(columns):
            raise BadRequest(400, "'columns' must be distinct strings")
        width = len(columns)
        for i, row in enumerate(rows):
            if not isinstance(row, list) or len(row) != width:
                raise BadRequest(400, f"row {i} must be a list of {width} values")
    else:
        records = doc["dataframe_records"]
        if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
            raise BadRequest(400, "'dataframe_records' must be a list of objects")
        columns = list(records[0]) if records else []
        keys0 = set(columns)
        if any(r.keys() != keys0 for r in records):
            raise BadRequest(400, "every record must have the same columns")
        rows = [[r[c] for c in columns] for r in records]
    return columns, rows, params


_NUMBER = {float, int}


def _float_block(rows: list[list], idx: list[int]) -> np.ndarray | None:
    """float64 (len(rows), len(idx)) of the chosen columns, or None unless every value is a JSON number."""
    if not rows:
        return np.zeros((0, len(idx)))
    pick = operator.itemgetter(*idx)
    picked = [pick(r) for r in rows] if len(idx) > 1 else [(r[idx[0]],) for r in rows]
    if not set(map(type, chain.from_iterable(picked))) <= _NUMBER:  # bool, str, null, ...
        return None
    try:
        return np.array(picked, dtype=np.float64)
    except OverflowError:  # an integer beyond float range
        return None


def parse_timestamps(values: list):
    """Parse a timestamp column: ISO strings in C via numpy, anything else through pandas."""
    if all(type(v) is str for v in values):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error")  # numpy only warns on a UTC offset; pandas keeps it
                return np.array(values, dtype="datetime64[ns]")
        except (ValueError, TypeError, Warning):
            pass
    for fmt in (None, "ISO8601"):  # pandas infers one format from the first value; ISO may vary
        try:
            with warnings.catch_warnings():  # "could not infer format": a 400 below if it fails
                warnings.simplefilter("ignore", UserWarning)
                return pd.to_datetime(values, format=fmt)
        except (ValueError, TypeError, OverflowError):
            continue
    raise BadRequest(400, "column 'timestamp' has values that are not dates/times")


def numeric_block(columns: list[str], rows: list[list], numeric: list[str]) -> np.ndarray:
    """float64 (len(rows), len(numeric)): the `numeric` columns of `rows`, in that order.

    Plain JSON numbers take the fast path (one conversion); anything else
    (null, bool, strings) goes column by column to say which column is wrong.
    null becomes NaN, for the row checks to judge.
    """
    position = {c: i for i, c in enumerate(columns)}
    values = _float_block(rows, [position[c] for c in numeric])
    if values is not None:
        return values
    part = pd.DataFrame(rows, columns=columns)[numeric]
    for c in part.columns:
        if part[c].dtype == object and part[c].map(
                lambda v: isinstance(v, (bool, str, list, dict))).any():
            raise BadRequest(400, f"column '{c}' must hold numbers")
    try:
        return part.to_numpy(dtype=np.float64, na_value=np.nan)  # one block, one conversion
    except (ValueError, TypeError, OverflowError):
        raise BadRequest(400, "every column except timestamp must hold numbers") from None
