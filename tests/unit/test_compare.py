import math

from mlflow_validator.expectations.compare import compare, describe
from mlflow_validator.settings import Tolerance

TOL = Tolerance(rtol=1e-6, atol=1e-9)


def test_equal_answers_have_no_differences():
    answer = {"predictions": [{"label": "a", "score": 0.5, "n": 3, "ok": True, "missing": None}]}
    assert compare(answer, answer, TOL) == []


def test_floats_within_tolerance_match_and_outside_do_not():
    assert compare([1.0], [1.0 + 1e-9], TOL) == []
    assert [d.path for d in compare([1.0], [1.001], TOL)] == ["$[0]"]


def test_integers_strings_and_booleans_are_exact():
    assert compare({"p": [0, "a", True]}, {"p": [1, "a", 1]}, TOL)[0].path == "$.p[0]"
    assert [d.path for d in compare([True], [1], TOL)] == ["$[0]"]


def test_nan_matches_nan_only():
    assert compare([math.nan], [math.nan], TOL) == []
    assert compare([math.nan], [0.0], TOL)


def test_shape_and_keys_are_checked():
    assert compare([1, 2], [1], TOL)[0].path == "$ (length)"
    assert compare({"a": 1}, {"b": 1}, TOL)[0].path == "$ (keys)"


def test_describe_counts_and_lists_differences():
    summary, listing = describe(compare([0] * 30, [1] * 30, TOL), "venv", "container")
    assert summary.startswith("30 value(s) differ; first at $[0]: venv 0 vs container 1")
    assert "and 10 more" in listing
