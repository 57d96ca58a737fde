"""The plan's requests in KServe's V2 protocol, as MLServer's MLflow runtime reads them, and its answers read
back as the scoring server's; an answer the container made up is passed on as it came, never raised."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mlflow_validator.expectations.answers import Answer
from mlflow_validator.serving.v2 import NotExpressible, question, scoring_answer

JSON = "application/json"


def v2(body: str, content_type: str = JSON) -> dict:
    asked = question(body, content_type)
    assert (asked.path, asked.content_type) == ("/v2/models/mlflow-model/infer", JSON)
    return json.loads(asked.body)


def test_a_data_frame_is_a_tensor_per_column_with_strings_marked_and_params_alongside():
    body = {"dataframe_split": {"columns": ["x", "n", "s"], "data": [[0.5, 1, "a"], [1.5, 2, "b"]]}}
    request = v2(json.dumps({**body, "params": {"scale": 2.0}}))
    assert request["parameters"] == {"scale": 2.0, "content_type": "pd"}
    assert request["inputs"] == [
        {"name": "x", "shape": [2], "datatype": "FP64", "data": [0.5, 1.5]},
        {"name": "n", "shape": [2], "datatype": "INT64", "data": [1, 2]},
        {"name": "s", "shape": [2], "datatype": "BYTES", "data": ["a", "b"], "parameters": {"content_type": "str"}},
    ]
    assert v2("x,n\n0.5,1\n1.5,2\n", "text/csv")["inputs"][0]["data"] == [0.5, 1.5]


def test_a_tensor_keeps_its_shape_and_a_dict_of_tensors_is_one_input_each():
    tensor = v2(json.dumps({"inputs": [[1.0, 2.0], [3.0, 4.0]]}))
    assert tensor["parameters"] == {"content_type": "np"}
    assert tensor["inputs"] == [{"name": "input-0", "shape": [2, 2], "datatype": "FP64", "data": [1.0, 2.0, 3.0, 4.0]}]
    named = v2(json.dumps({"inputs": {"a": [1, 2], "b": [3, 4]}}))
    assert named["parameters"]["content_type"] == "dict"
    assert [tensor["name"] for tensor in named["inputs"]] == ["a", "b"]


@pytest.mark.parametrize("body", ["not json", '{"neither": "format"}', '{"dataframe_split": 3}'])
def test_what_the_scoring_server_cannot_parse_has_no_v2_form(body):
    with pytest.raises(NotExpressible):
        question(body, JSON)


def output(name: str, shape: list[int], data: list) -> dict:
    return {"name": name, "shape": shape, "datatype": "FP64", "data": data}


def test_answers_read_back_as_the_scoring_servers():
    one = {"outputs": [output("output-1", [3, 1], [0, 1, 2])]}
    assert json.loads(scoring_answer(200, json.dumps(one))) == {"predictions": [0, 1, 2]}
    grid = {"outputs": [output("output-1", [2, 2], [1, 2, 3, 4])]}
    assert json.loads(scoring_answer(200, json.dumps(grid))) == {"predictions": [[1, 2], [3, 4]]}
    frame = {"parameters": {"content_type": "pd"}, "outputs": [output("a", [2], [1, 2]), output("b", [2], [3, 4])]}
    assert json.loads(scoring_answer(200, json.dumps(frame)))["predictions"] == [{"a": 1, "b": 3}, {"a": 2, "b": 4}]
    named = {"outputs": [output("a", [2], [1, 2]), output("b", [2], [3, 4])]}
    assert json.loads(scoring_answer(200, json.dumps(named)))["predictions"] == {"a": [1, 2], "b": [3, 4]}
    error = '{"error": "mlflow.exceptions.MlflowException: Failed to enforce schema"}'
    assert scoring_answer(500, error) == error
    assert Answer(500, error, 0.1).is_mlflow_rejection()


HOSTILE = [
    "[]",
    '{"outputs": 3}',
    '{"outputs": [{"name": "a", "shape": [1e400], "data": [1]}]}',
    '{"outputs": [{"name": "a", "shape": [-1, 5], "data": [1, 2]}]}',
    '{"parameters": {"content_type": "pd"}, "outputs": [{"name": "a", "shape": [], "data": 1}, '
    '{"name": "b", "shape": [], "data": 2}]}',
    '{"parameters": "pd", "outputs": [{"name": "a", "shape": [1], "data": [1]}, '
    '{"name": "b", "shape": [1], "data": [2]}]}',
    "[" * 100_000 + "]" * 100_000,
]


@pytest.mark.parametrize("text", HOSTILE)
def test_an_answer_that_is_not_a_v2_response_passes_as_it_came(text):
    assert scoring_answer(200, text) == text


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(
            st.sampled_from(["outputs", "name", "shape", "data", "parameters", "content_type"]), inner, max_size=4
        )
    ),
    max_leaves=20,
)


@given(json_values)
def test_whatever_json_the_container_sends_is_read_without_raising(value):
    text = json.dumps(value)
    answer = scoring_answer(200, text)
    assert answer == text or "predictions" in json.loads(answer)
