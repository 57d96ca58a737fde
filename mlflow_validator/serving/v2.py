"""KServe's V2 inference protocol, as MLServer's MLflow runtime (mlserver-mlflow) reads and writes it.

The request plan is written for MLflow's scoring server. Each request is parsed as the scoring server parses
it (MLflow's own `_split_data_and_params` and `infer_and_parse_data`, without the schema, so an invalid
request stays invalid) and put as a V2 inference request: a DataFrame as one tensor per column (the
runtime's `pd` content type), an array as one tensor (`np`), a dict of arrays as one tensor per key
(`dict`); strings are BYTES tensors marked `str`, so they decode as text; params are the request's
parameters. The answer is turned back into the scoring server's `{"predictions": …}`, so both serving
targets are compared with the venv's answers by the same checks. Hand-written: MLServer's own codecs need
MLServer installed, which supports Python < 3.13 only and brings gRPC and Kafka clients.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from mlflow.pyfunc.scoring_server import _split_data_and_params, infer_and_parse_data

from mlflow_validator.expectations.requests import CSV

MODEL_NAME = "mlflow-model"  # the name MLflow's MLServer image served the model under
INFERENCE_PATH = f"/v2/models/{MODEL_NAME}/infer"
DATATYPES = {"b": "BOOL", "i": "INT64", "u": "UINT64", "f": "FP64"}  # by numpy dtype kind; else BYTES


class NotExpressible(ValueError):
    """The request has no V2 form (a body the scoring server itself cannot parse)."""


@dataclass(frozen=True)
class Question:
    path: str
    body: str
    content_type: str


def question(body: str, content_type: str) -> Question:
    """The V2 inference request that asks what `body` asks the scoring server."""
    # The plan's bodies come from the model's example too: whatever parsing or encoding one raises, it has no
    # V2 form, which the answers check reports for that request.
    try:
        if content_type == CSV:
            data: Any = pd.read_csv(io.StringIO(body))
            params = None
        else:
            raw, params = _split_data_and_params(body)
            data = infer_and_parse_data(raw)
        if isinstance(data, pd.DataFrame):
            inputs, kind = [_tensor(str(column), data[column].to_numpy()) for column in data.columns], "pd"
        elif isinstance(data, dict):
            inputs, kind = [_tensor(str(name), np.asarray(value)) for name, value in data.items()], "dict"
        else:
            inputs, kind = [_tensor("input-0", np.asarray(data))], "np"
        request = {"parameters": {**(params or {}), "content_type": kind}, "inputs": inputs}
        return Question(INFERENCE_PATH, json.dumps(request, default=_plain, allow_nan=False), "application/json")
    except Exception as exc:
        raise NotExpressible(f"{type(exc).__name__} while putting it as V2 tensors") from None


def _tensor(name: str, values: np.ndarray) -> dict[str, Any]:
    """Numbers as they are (a missing one as null: V2's JSON has no NaN); text as `str`; anything else in a
    column (lists, dicts, None) as JSON text marked `pd_json`, as MLServer's own encoder sends it."""
    datatype = DATATYPES.get(values.dtype.kind, "BYTES")
    data = [None if isinstance(v, float) and not np.isfinite(v) else v for v in values.reshape(-1).tolist()]
    tensor: dict[str, Any] = {"name": name, "shape": list(values.shape), "datatype": datatype, "data": data}
    if datatype == "BYTES":
        if all(isinstance(value, str) for value in data):
            tensor["parameters"] = {"content_type": "str"}
        else:
            tensor["parameters"] = {"content_type": "pd_json"}
            tensor["data"] = [json.dumps(value, default=_plain) for value in data]
    return tensor


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} has no JSON form")


def scoring_answer(status: int, text: str) -> str:
    """A V2 inference response as the scoring server's `{"predictions": …}`; anything else as it came."""
    if status != 200:
        return text
    try:
        return json.dumps({"predictions": _predictions(json.loads(text))})
    except (ValueError, KeyError, TypeError, AttributeError, IndexError, OverflowError, RecursionError):
        return text  # not a V2 response (the container may send anything): the checks judge it as it came


def _predictions(response: dict[str, Any]) -> Any:
    values = {str(output["name"]): _values(output) for output in response["outputs"]}
    if (response.get("parameters") or {}).get("content_type") == "pd":  # a DataFrame: the scoring server's records
        columns = [list(column) for column in values.values()]
        return [dict(zip(values, row, strict=True)) for row in zip(*columns, strict=True)]
    if len(values) == 1:
        return next(iter(values.values()))
    return values


def _values(output: dict[str, Any]) -> Any:
    """The tensor's data in its shape; MLServer sends a 1-D array as [n, 1], which is put back."""
    shape = [int(size) for size in output["shape"]]
    data = list(output["data"])
    if (output.get("parameters") or {}).get("content_type") == "pd_json":  # a column of JSON values, each as text
        data = [json.loads(value) for value in data]
    if len(shape) == 2 and shape[1] == 1:
        return data
    return np.asarray(data, dtype=object).reshape(shape).tolist() if shape else data
