"""Request planning is pure: model files in, requests out."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from mlflow_validator.expectations.requests import CSV, Expect, plan_requests
from mlflow_validator.model.files import ModelFiles
from mlflow_validator.model.mlmodel import ModelFileError
from mlflow_validator.settings import RequestSettings

DATAFRAME_SIGNATURE = {
    "inputs": json.dumps([{"type": "double", "name": "x", "required": True}, {"type": "long", "name": "n"}]),
    "params": json.dumps([{"name": "scale", "type": "double", "default": 1.0, "shape": None}]),
}


def mlmodel(tmp_path: Path, meta: dict[str, object]) -> ModelFiles:
    (tmp_path / "MLmodel").write_text(yaml.safe_dump({"flavors": {}, **meta}))
    return ModelFiles(tmp_path, {})


def model(tmp_path: Path, example: object, signature: dict[str, str], serving: bool = True) -> ModelFiles:
    name = "serving_input_example.json" if serving else "input_example.json"
    (tmp_path / name).write_text(json.dumps(example))
    info = {"artifact_path": "input_example.json", "type": "dataframe" if not serving else "json_object"}
    if serving:
        info["serving_input_path"] = name
    return mlmodel(tmp_path, {"saved_input_example_info": info, "signature": signature})


def by_name(requests):
    return {r.name: r for r in requests}


def test_a_data_frame_example_gets_every_format_a_row_a_batch_params_and_contract_requests(tmp_path):
    example = {"dataframe_split": {"columns": ["x", "n"], "data": [[0.5, 1], [1.5, 2]]}, "params": {"scale": 2.0}}
    meta = model(tmp_path, example, DATAFRAME_SIGNATURE)
    requests = by_name(plan_requests(meta, RequestSettings(batch_size=5)))
    assert next(iter(requests)) == "input-example"
    assert json.loads(requests["derived-records"].body)["dataframe_records"][1] == {"x": 1.5, "n": 2}
    assert len(json.loads(requests["derived-batch"].body)["dataframe_split"]["data"]) == 5
    assert json.loads(requests["derived-single-row"].body)["params"] == {"scale": 2.0}
    assert json.loads(requests["derived-params-defaults"].body)["params"] == {"scale": 1.0}
    assert "derived-csv" not in requests  # CSV cannot carry params
    missing = json.loads(requests["derived-contract-missing-column"].body)["dataframe_split"]
    assert missing["columns"] == ["n"]
    wrong = json.loads(requests["derived-contract-wrong-type"].body)["dataframe_split"]
    assert wrong["data"][0][0] == "not a number"
    assert requests["derived-contract-wrong-type"].expect is Expect.REJECTION
    assert requests["derived-records"].expect is Expect.FORMAT


def test_without_params_a_data_frame_is_also_sent_as_csv(tmp_path):
    example = {"dataframe_split": {"columns": ["x", "n"], "data": [[0.5, 1]]}}
    requests = by_name(plan_requests(model(tmp_path, example, {}), RequestSettings()))
    assert requests["derived-csv"].body == "x,n\n0.5,1\n"
    assert requests["derived-csv"].content_type == CSV
    assert not any(name.startswith("derived-contract") for name in requests)  # no signature, no contract


def test_tensors_swap_inputs_and_instances(tmp_path):
    signature = {"inputs": json.dumps([{"type": "tensor", "tensor-spec": {"dtype": "float32", "shape": [-1, 2]}}])}
    requests = by_name(plan_requests(model(tmp_path, {"inputs": [[1, 2], [3, 4]]}, signature), RequestSettings()))
    assert json.loads(requests["derived-instances"].body) == {"instances": [[1, 2], [3, 4]]}
    assert json.loads(requests["derived-contract-wrong-type"].body)["inputs"][0] == ["not a number"] * 2


def test_a_dict_of_columns_is_also_sent_as_rows(tmp_path):
    example = {"inputs": {"text": ["a", "bb"], "weight": [1.0, 2.0]}}
    requests = by_name(plan_requests(model(tmp_path, example, {}), RequestSettings(batch_size=3)))
    assert json.loads(requests["derived-instances"].body)["instances"][1] == {"text": "bb", "weight": 2.0}
    assert json.loads(requests["derived-batch"].body)["inputs"]["text"] == ["a", "bb", "a"]


def test_an_older_models_input_example_becomes_a_serving_request(tmp_path):
    meta = model(tmp_path, {"columns": ["x"], "data": [[1.0]]}, {}, serving=False)
    first = plan_requests(meta, RequestSettings())[0]
    assert json.loads(first.body) == {"dataframe_split": {"columns": ["x"], "data": [[1.0]]}}
    assert "input_example.json" in first.origin


def test_user_requests_come_with_their_expected_responses(tmp_path):
    requests_dir = tmp_path / "requests"
    requests_dir.mkdir()
    (requests_dir / "a.json").write_text("{}")
    (requests_dir / "a.expected.json").write_text("[]")
    (requests_dir / "b.csv").write_text("x\n1\n")
    (requests_dir / "notes.txt").write_text("ignored")
    requests = by_name(plan_requests(mlmodel(tmp_path, {}), RequestSettings(directory=requests_dir)))
    assert list(requests) == ["user-a", "user-b"]  # no example logged: the user's requests are enough
    assert requests["user-a"].expected_response == requests_dir / "a.expected.json"
    assert requests["user-b"].content_type == CSV


def test_nothing_to_send_is_a_model_problem(tmp_path):
    with pytest.raises(ModelFileError, match="no input example is logged"):
        plan_requests(mlmodel(tmp_path, {}), RequestSettings())
