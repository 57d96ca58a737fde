"""The sample requests both stages answer: the logged example, the user's request files, and requests
derived from the signature. Pure: reads files and decides; runs nothing."""

from __future__ import annotations

import copy
import csv
import enum
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeGuard

from mlflow_validator.expectations.chat import CONVERSATION, ONE_TURN, ChatContract, chat_contract
from mlflow_validator.model.files import ModelFiles
from mlflow_validator.model.mlmodel import ModelFileError, Signature
from mlflow_validator.settings import RequestSettings

JSON = "application/json"
CSV = "text/csv"
EXPECTED_SUFFIX = ".expected.json"
NUMERIC_TYPES = ("double", "float", "long", "integer")
NOT_A_NUMBER = "not a number"


class Expect(str, enum.Enum):
    ANSWER = "answer"  # a 200, compared across stages
    FORMAT = "format"  # another payload format: compared like an answer, but MLflow may refuse it (a warning)
    REJECTION = "rejection"  # a 4xx with MLflow's error JSON; a 5xx, a hang or a dead server fails


@dataclass(frozen=True)
class SampleRequest:
    name: str  # unique and file-name safe: answers are saved as answers/<stage>/<name>.json
    body: str
    content_type: str
    origin: str  # where the request came from, said in failure messages
    expect: Expect = Expect.ANSWER
    expected_response: Path | None = None
    path: Path | None = None  # the user's request file, when it came from one


def user_requests(directory: Path) -> list[SampleRequest]:
    """`*.json` and `*.csv` payloads, each optionally with `<name>.expected.json` next to it."""
    found = []
    for path in sorted(directory.iterdir()):
        if path.name.endswith(EXPECTED_SUFFIX) or path.suffix not in (".json", ".csv"):
            continue
        expected = path.with_name(path.stem + EXPECTED_SUFFIX)
        found.append(
            SampleRequest(
                name=f"user-{path.stem}",
                body=path.read_text(),
                content_type=CSV if path.suffix == ".csv" else JSON,
                origin=f"request file {path.name}",
                expected_response=expected if expected.is_file() else None,
                path=path,
            )
        )
    return found


def _payload(key: str, data: Any, params: Any) -> str:
    return json.dumps({key: data, **({"params": params} if params is not None else {})})


def _as_csv(split: dict[str, Any]) -> str | None:
    if any(isinstance(value, (list, dict)) for row in split["data"] for value in row):
        return None  # CSV cannot carry nested values
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(split["columns"])
    writer.writerows(split["data"])
    return out.getvalue()


def _repeat(items: list[Any], size: int) -> list[Any]:
    return (items * size)[:size]


def _numeric_columns(signature: Signature, present: list[str]) -> list[str]:
    return [c["name"] for c in signature.inputs if c.get("type") in NUMERIC_TYPES and c.get("name") in present]


def _required_columns(signature: Signature, present: list[str]) -> list[str]:
    return [c["name"] for c in signature.inputs if c.get("name") in present and c.get("required", True)]


def _dataframe_requests(
    split: dict[str, Any], params: Any, signature: Signature, batch_size: int
) -> list[SampleRequest]:
    columns, rows = split["columns"], split["data"]
    origin = "the input example"
    records = [dict(zip(columns, row, strict=True)) for row in rows]
    requests = [
        SampleRequest(
            "records",
            _payload("dataframe_records", records, params),
            JSON,
            f"{origin} as dataframe_records",
            Expect.FORMAT,
        ),
        SampleRequest(
            "single-row",
            _payload("dataframe_split", {**split, "data": rows[:1]}, params),
            JSON,
            f"the first row of {origin}",
        ),
        SampleRequest(
            "batch",
            _payload("dataframe_split", {**split, "data": _repeat(rows, batch_size)}, params),
            JSON,
            f"{origin} repeated to {batch_size} rows",
        ),
    ]
    if params is None and (text := _as_csv(split)) is not None:
        requests.append(SampleRequest("csv", text, CSV, f"{origin} as CSV", Expect.FORMAT))
    requests += _params_requests("dataframe_split", split, signature)
    if required := _required_columns(signature, columns):
        index = columns.index(required[0])
        missing = {
            "columns": [c for c in columns if c != required[0]],
            "data": [[v for i, v in enumerate(row) if i != index] for row in rows],
        }
        requests.append(
            _rejection(
                "missing-column",
                _payload("dataframe_split", missing, params),
                f"{origin} without the required column '{required[0]}'",
            )
        )
    if numeric := _numeric_columns(signature, columns):
        wrong = copy.deepcopy(split)
        for row in wrong["data"]:
            row[columns.index(numeric[0])] = NOT_A_NUMBER
        requests.append(
            _rejection(
                "wrong-type",
                _payload("dataframe_split", wrong, params),
                f"{origin} with text in the numeric column '{numeric[0]}'",
            )
        )
    return requests


def _rejection(name: str, body: str, origin: str) -> SampleRequest:
    return SampleRequest(f"contract-{name}", body, JSON, origin, Expect.REJECTION)


def _params_requests(key: str, data: Any, signature: Signature) -> list[SampleRequest]:
    """The declared params set to their defaults (the example itself carries its own values)."""
    if not signature.params:
        return []
    defaults = {spec["name"]: spec.get("default") for spec in signature.params if "name" in spec}
    return [
        SampleRequest(
            "params-defaults",
            _payload(key, data, defaults),
            JSON,
            "the input example with every param at its declared default",
        )
    ]


def _columnar_requests(
    columns: dict[str, Any], params: Any, signature: Signature, batch_size: int
) -> list[SampleRequest]:
    """A dict input of equal-length columns ({"inputs": {"a": [..], "b": [..]}})."""
    origin = "the input example"
    length = len(next(iter(columns.values())))
    rows = [{name: values[i] for name, values in columns.items()} for i in range(length)]
    requests = [
        SampleRequest(
            "instances", _payload("instances", rows, params), JSON, f"{origin} as instances (rows)", Expect.FORMAT
        ),
        SampleRequest(
            "single-row",
            _payload("inputs", {k: v[:1] for k, v in columns.items()}, params),
            JSON,
            f"the first row of {origin}",
        ),
        SampleRequest(
            "batch",
            _payload("inputs", {k: _repeat(v, batch_size) for k, v in columns.items()}, params),
            JSON,
            f"{origin} repeated to {batch_size} rows",
        ),
        *_params_requests("inputs", columns, signature),
    ]
    if required := _required_columns(signature, list(columns)):
        missing = {k: v for k, v in columns.items() if k != required[0]}
        requests.append(
            _rejection(
                "missing-column",
                _payload("inputs", missing, params),
                f"{origin} without the required column '{required[0]}'",
            )
        )
    if numeric := _numeric_columns(signature, list(columns)):
        wrong = {**columns, numeric[0]: [NOT_A_NUMBER] * length}
        requests.append(
            _rejection(
                "wrong-type",
                _payload("inputs", wrong, params),
                f"{origin} with text in the numeric column '{numeric[0]}'",
            )
        )
    return requests


def _replace_leaves(value: Any, leaf: Any) -> Any:
    return [_replace_leaves(item, leaf) for item in value] if isinstance(value, list) else leaf


def _tensor_requests(
    key: str, items: list[Any], params: Any, signature: Signature, batch_size: int
) -> list[SampleRequest]:
    origin = "the input example"
    other = "instances" if key == "inputs" else "inputs"
    requests = [
        SampleRequest(other, _payload(other, items, params), JSON, f"{origin} as '{other}'", Expect.FORMAT),
        SampleRequest("single-row", _payload(key, items[:1], params), JSON, f"the first item of {origin}"),
        SampleRequest(
            "batch", _payload(key, _repeat(items, batch_size), params), JSON, f"{origin} repeated to {batch_size} items"
        ),
        *_params_requests(key, items, signature),
    ]
    tensor = signature.inputs[0] if len(signature.inputs) == 1 and signature.inputs[0].get("type") == "tensor" else {}
    dtype = str(tensor.get("tensor-spec", {}).get("dtype", ""))
    if dtype.startswith(("float", "int", "uint")):
        requests.append(
            _rejection(
                "wrong-type",
                _payload(key, _replace_leaves(items, NOT_A_NUMBER), params),
                f"{origin} with text in place of its {dtype} numbers",
            )
        )
    return requests


def _is_columnar(data: Any) -> TypeGuard[dict[str, list[Any]]]:
    if not isinstance(data, dict) or not data or not all(isinstance(v, list) for v in data.values()):
        return False
    return len({len(v) for v in data.values()}) == 1 and bool(next(iter(data.values())))


def derived_requests(example: dict[str, Any], signature: Signature, batch_size: int) -> list[SampleRequest]:
    """Every payload format the example's input type allows, a single row, a batch, params, contract tests."""
    params = example.get("params")
    if isinstance(split := example.get("dataframe_split"), dict) and split.get("columns"):
        return _dataframe_requests(split, params, signature, batch_size)
    if isinstance(records := example.get("dataframe_records"), list) and records and isinstance(records[0], dict):
        columns = list(records[0])
        split = {"columns": columns, "data": [[row.get(c) for c in columns] for row in records]}
        return _dataframe_requests(split, params, signature, batch_size)
    for key in ("inputs", "instances"):
        data = example.get(key)
        if _is_columnar(data):
            return _columnar_requests(data, params, signature, batch_size)
        if isinstance(data, list) and data:
            return _tensor_requests(key, data, params, signature, batch_size)
    return []


def chat_requests(contract: ChatContract) -> list[SampleRequest]:
    """One turn, a conversation, generation settings, and turns that are not a list, which MLflow's schema
    enforcement must refuse."""
    key, api = contract.key, contract.api
    planned = [
        SampleRequest("chat-one-turn", json.dumps({key: ONE_TURN}), JSON, f"one user turn ({api})"),
        SampleRequest(
            "chat-conversation", json.dumps({key: CONVERSATION}), JSON, f"a conversation with a system prompt ({api})"
        ),
        _rejection("turns-not-a-list", json.dumps({key: "not a list"}), f"'{key}' as a string ({api} forbids it)"),
    ]
    if contract.params:
        body = json.dumps({key: ONE_TURN, **contract.params})
        planned.append(SampleRequest("chat-params", body, JSON, f"one turn with {', '.join(contract.params)}"))
    return planned


def _json_or_none(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return None  # the static stage reports it; the example is still sent as it is


def plan_requests(files: ModelFiles, settings: RequestSettings) -> list[SampleRequest]:
    """The logged example first, then the user's files, then the requests derived from both."""
    requests: list[SampleRequest] = []
    try:
        example = files.serving_example
    except ModelFileError:
        example = None
        if settings.directory is None:
            raise
    if example is not None:
        requests.append(
            SampleRequest("input-example", example.body, JSON, f"the logged input example ({example.file_name})")
        )
    if settings.directory is not None:
        requests += user_requests(settings.directory)
    if not requests:
        raise ModelFileError(f"no input example is logged and {settings.directory} holds no *.json or *.csv request")
    if contract := chat_contract(files.mlmodel):
        return requests + [
            SampleRequest(f"derived-{r.name}", r.body, r.content_type, r.origin, r.expect)
            for r in chat_requests(contract)
        ]
    if example is not None and isinstance(parsed := _json_or_none(example.body), dict):
        signature = files.mlmodel.signature
        requests += [
            SampleRequest(f"derived-{r.name}", r.body, r.content_type, r.origin, r.expect)
            for r in derived_requests(parsed, signature, settings.batch_size)
        ]
    return requests
