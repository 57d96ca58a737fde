"""What a team's test hands `model.predict` becomes the request body the scoring server expects."""

import json

import numpy as np
import pandas as pd
import pytest

from mlflow_validator.expectations.answers import Answer
from mlflow_validator.pytest_plugin import ModelRefused, ModelUnderTest, payload


@pytest.mark.parametrize(
    ("data", "body"),
    [
        (pd.DataFrame({"x": [1.5], "n": [2]}), {"dataframe_split": {"columns": ["x", "n"], "data": [[1.5, 2]]}}),
        ({"x": [1.5], "n": [2]}, {"inputs": {"x": [1.5], "n": [2]}}),
        ({"dataframe_records": [{"x": 1.5}]}, {"dataframe_records": [{"x": 1.5}]}),
        ([{"x": 1.5, "n": 2}], {"dataframe_records": [{"x": 1.5, "n": 2}]}),
        ([[1.5, 2]], {"instances": [[1.5, 2]]}),
        (np.array([[1.0, 2.0]]), {"inputs": [[1.0, 2.0]]}),
        ('{"instances": [1]}', {"instances": [1]}),
    ],
    ids=["frame", "columns", "payload", "records", "rows", "array", "text"],
)
def test_what_a_test_has_at_hand_becomes_a_scoring_server_payload(data, body):
    assert json.loads(payload(data)) == body


def test_params_travel_with_the_payload():
    assert json.loads(payload([[1]], {"scale": 2.0})) == {"instances": [[1]], "params": {"scale": 2.0}}


class Answering:
    def __init__(self, answer: Answer) -> None:
        self.answer = answer

    def invoke(self, body: str, content_type: str) -> Answer:
        return self.answer


def test_predict_decodes_the_predictions_and_a_refusal_raises_with_mlflows_message():
    ok = ModelUnderTest(Answering(Answer(200, '{"predictions": [0, 1]}', 0.0)))  # type: ignore[arg-type]
    assert ok.predict([[1], [2]]) == [0, 1]
    refused = ModelUnderTest(Answering(Answer(400, '{"error_code": "BAD_REQUEST", "message": "no"}', 0.0)))  # type: ignore[arg-type]
    with pytest.raises(ModelRefused, match="the model answered 400: no"):
        refused.predict([[1]])
