"""The three verdicts, on a corpus made here: legitimate models of ten libraries are `safe`; payloads of every
family are `unsafe` or `unverified`, and none of them runs; a reading that cannot finish is never `safe`; a
pickle is read whatever the file is called. Nothing is ever unpickled."""

from __future__ import annotations

import collections
import copyreg
import datetime
import decimal
import functools
import logging.config
import operator
import os
import pickle
import struct
import sys
import timeit
import uuid
import zlib
from pathlib import Path

import cloudpickle
import joblib
import lightgbm
import numpy as np
import pandas as pd
import pytest
import scipy.sparse
import statsmodels.api as sm
import xgboost
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mlflow.pyfunc import PythonModel
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler
from sklearn.utils import _testing as sklearn_testing
from statsmodels.tsa.arima.model import ARIMA
from statsmodels.tsa.holtwinters import ExponentialSmoothing

from mlflow_validator.stages.static.pickles import analyze_model, analyze_pickle

PYTHON = "3.11.7"
FEATURES, TARGET = np.random.default_rng(0).random((30, 3)), np.arange(30) % 2
SERIES = np.cumsum(np.random.default_rng(1).random(40))  # a random walk, for the time-series models


class Reduces:
    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def scaled(frame):
    return frame * 2


class NotebookModel(PythonModel):
    """What a notebook logs: a by-value class, a helper function, values of several libraries."""

    def __init__(self):
        self.offset = np.float64(0.5)
        self.helper = scaled
        self.first = operator.itemgetter(0)

    def predict(self, context, model_input, params=None):
        return scaled(model_input) + self.offset


def by_value(obj: object) -> bytes:
    """cloudpickle's pickle of `obj` with this module's classes and functions carried by value, as a
    notebook's (`__main__`) are."""
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    try:
        return cloudpickle.dumps(obj)
    finally:
        cloudpickle.unregister_pickle_by_value(sys.modules[__name__])


def legitimate() -> dict[str, object]:
    return {
        "sklearn-pipeline": make_pipeline(
            FunctionTransformer(functools.partial(np.clip, a_min=0, a_max=1)), StandardScaler(), LogisticRegression()
        ).fit(FEATURES, TARGET),
        "lightgbm": lightgbm.LGBMClassifier(n_estimators=3, verbose=-1).fit(FEATURES, TARGET),
        "xgboost": xgboost.XGBClassifier(n_estimators=3, max_depth=2).fit(FEATURES, TARGET),
        "statsmodels-ols": sm.OLS(TARGET, sm.add_constant(FEATURES)).fit(),
        "statsmodels-arima": ARIMA(SERIES, order=(1, 0, 0)).fit(),
        "statsmodels-holt-winters": ExponentialSmoothing(SERIES, trend="add").fit(),
        "scipy-sparse": scipy.sparse.csr_matrix(np.eye(3)),
        "pandas-frame": pd.DataFrame({"x": [1.5], "when": pd.to_datetime(["2026-01-01"]), "s": ["a"]}),
        "pandas-categorical": pd.Categorical(["a", "b", "a"]),
        "numpy-generator": np.random.default_rng(1),
        "stdlib-values": {
            "when": datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc),
            "id": uuid.UUID(int=7),
            "amount": decimal.Decimal("1.25"),
            "order": collections.OrderedDict(a=1),
            "getters": (operator.itemgetter(1), operator.attrgetter("x")),
        },
    }


@pytest.mark.parametrize("protocol", [2, 4, 5])
@pytest.mark.parametrize("name", list(legitimate()))
def test_what_models_are_made_of_is_safe(tmp_path: Path, name: str, protocol: int):
    path = tmp_path / f"{name}.pkl"
    path.write_bytes(pickle.dumps(legitimate()[name], protocol=protocol))
    (found,) = analyze_pickle(path, tmp_path, PYTHON)
    assert found.verdict == "safe", (found.unsafe, found.unverified)


@pytest.mark.parametrize("how", ["cloudpickle", "joblib-compressed"])
def test_a_cloudpickled_notebook_model_and_a_compressed_joblib_file_are_safe(tmp_path: Path, how: str):
    path = tmp_path / "model.pkl"
    if how == "cloudpickle":
        path.write_bytes(by_value(NotebookModel()))
    else:
        joblib.dump(legitimate()["sklearn-pipeline"], path, compress=("lzma", 3))
    (found,) = analyze_pickle(path, tmp_path, PYTHON)
    assert found.verdict == "safe", (found.unsafe, found.unverified)


class Finalised:
    def __del__(self):
        pass


class Meta(type):
    pass


class MadeByMeta(metaclass=Meta):
    pass


class Hashed:
    def __hash__(self):
        return 1


class Runs:
    def __init__(self, command):
        os.system(command)


class Hooked:
    def __init_subclass__(cls, **kwargs):
        os.system("true")


class MadeThroughHook(Hooked):
    pass


class SetsThroughHook:
    __slots__ = ("value",)

    def __init__(self):
        self.value = 1

    def __setattr__(self, name, value):
        os.system("true")


class TypesAttribute:
    """Pickles as cloudpickle's _builtin_type(name), i.e. getattr(types, name)."""

    def __init__(self, name):
        self.name = name

    def __call__(self, *args):  # the pickler wants a callable; nothing here calls it
        raise AssertionError("never called")

    def __reduce__(self):
        return cloudpickle.cloudpickle._builtin_type, (self.name,)


def class_body(namespace):
    os.system("true")


class RunsInitThroughCopyreg:
    def __reduce__(self):
        return copyreg._reconstructor, (Runs, Runs, "true")


def text(value: str) -> bytes:
    """SHORT_BINUNICODE/BINUNICODE of `value`, for pickles written opcode by opcode."""
    encoded = value.encode()
    return b"X" + struct.pack("<I", len(encoded)) + encoded


def payloads(marker: Path) -> dict[str, tuple[bytes, str]]:
    """Each payload with the verdict it must at least get. The marker file is what running one would make."""
    command = f"touch {marker}"
    return {
        "a launcher of the standard library": (
            pickle.dumps(Reduces(timeit.timeit, f"open('{marker}', 'w')")),
            "unsafe",
        ),
        "an inner pickle through numpy": (pickle.dumps(Reduces(np.load, str(marker), None, True)), "unsafe"),
        "an inner pickle through pandas": (pickle.dumps(Reduces(pd.read_pickle, str(marker))), "unsafe"),
        "code from a string through pandas": (pickle.dumps(Reduces(pd.eval, "1 + 1")), "unsafe"),
        "a callable no list names": (pickle.dumps(Reduces(logging.config.listen, 9999)), "unverified"),
        "a computed callable": (
            pickle.dumps(
                Reduces(
                    functools.partial(os.system, command),
                )
            ),
            "unsafe",
        ),
        "a finaliser carried by value": (by_value(Finalised()), "unsafe"),
        "a metaclass carried by value": (by_value(MadeByMeta), "unsafe"),
        "a key whose hash is carried code": (by_value({Hashed(): 1}), "unverified"),
        "a truncated stream": (pickle.dumps(Reduces(print, "x"))[:-3], "unverified"),
        # From an attack on the allow-list: builders that call what they are given, planted methods, library
        # classes whose own __new__ does I/O, names that reach through a module.
        "a builder that calls its second argument": (
            b"\x80\x04"
            + text("numpy.random._pickle")
            + text("__randomstate_ctor")
            + b"\x93"
            + text(command)
            + text("posix")
            + text("system")
            + b"\x93\x86R.",
            "unverified",
        ),
        "a method planted by BUILD, called by the next BUILD": (
            b"\x80\x02ccollections\nOrderedDict\n)R}"
            + text("__setstate__")
            + b"cposixpath\njoin\nsb"
            + text(command)
            + b"b.",
            "unverified",
        ),
        "a carried __init__ run by copyreg": (by_value(RunsInitThroughCopyreg()), "unverified"),
        "a library class whose __new__ opens files": (
            b"\x80\x04cnumpy\nmemmap\n("
            + text(str(marker))
            + b"cnumpy\nuint8\n"
            + text("w+")
            + b"K\x00K\x10\x85t\x81.",
            "unsafe",
        ),
        "an inner pickle through joblib": (pickle.dumps(Reduces(joblib.load, str(marker))), "unsafe"),
        "an inner pickle through cloudpickle": (pickle.dumps(Reduces(cloudpickle.loads, b"\x80\x04N.")), "unsafe"),
        "a launcher inside an ML library": (
            pickle.dumps(Reduces(sklearn_testing.assert_run_python_script_without_output, command)),
            "unverified",
        ),
        "a class-creation hook carried by value": (by_value(MadeThroughHook), "unverified"),
        "an attribute hook carried by value": (by_value(SetsThroughHook()), "unverified"),
        "a types function reached through cloudpickle's _builtin_type": (
            by_value(Reduces(TypesAttribute("new_class"), "X", (), None, class_body)),
            "unverified",
        ),
        "a name that reaches through a module": (
            b"\x80\x04" + text("joblib") + text("os.system") + b"\x93" + text(command) + b"\x85R.",
            "unsafe",
        ),
    }


@pytest.mark.parametrize("name", list(payloads(Path("/nonexistent"))))
def test_every_payload_family_is_unsafe_or_unverified_and_none_runs(tmp_path: Path, name: str):
    marker = tmp_path / "the-payload-ran"
    data, at_least = payloads(marker)[name]
    path = tmp_path / "model" / "python_model.pkl"
    path.parent.mkdir()
    path.write_bytes(data)
    (found,) = analyze_model(path.parent, PYTHON)
    assert found.verdict in (("unsafe",) if at_least == "unsafe" else ("unsafe", "unverified")), found
    assert not marker.exists()


def test_a_pickle_is_read_whatever_the_file_is_called_and_whatever_holds_it(tmp_path: Path):
    payload = Reduces(os.system, "id")
    model = tmp_path / "model"
    (model / "artifacts").mkdir(parents=True)
    (model / "artifacts" / "table.dat").write_bytes(pickle.dumps(payload, protocol=0))
    (model / "artifacts" / "state.bin").write_bytes(pickle.dumps(payload, protocol=5)[2:])  # no PROTO opcode
    np.save(model / "artifacts" / "objects.npy", np.array([payload], dtype=object), allow_pickle=True)
    np.savez(model / "artifacts" / "arrays.npz", plain=np.arange(3), objects=np.array([payload], dtype=object))
    (model / "artifacts" / "model.joblib.z").write_bytes(zlib.compress(pickle.dumps(payload)))
    np.save(model / "artifacts" / "plain.npy", np.arange(3))
    (model / "artifacts" / "weights.bin").write_bytes(np.random.default_rng(0).bytes(200_000))
    (model / "input_example.json").write_text('{"columns": ["x"], "data": [[1]]}')
    found = {finding.file: finding.verdict for finding in analyze_model(model, PYTHON)}
    assert found == {
        "artifacts/table.dat": "unsafe",
        "artifacts/state.bin": "unsafe",
        "artifacts/objects.npy": "unsafe",
        "artifacts/arrays.npz/objects.npy": "unsafe",
        "artifacts/model.joblib.z": "unsafe",
    }


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_a_mutated_or_cut_pickle_never_crashes_the_reader_and_a_cut_one_is_never_safe(tmp_path: Path, data):
    original = pickle.dumps(legitimate()["stdlib-values"], protocol=data.draw(st.sampled_from([0, 2, 5])))
    cut = data.draw(st.integers(min_value=1, max_value=len(original) - 1))
    position = data.draw(st.integers(min_value=0, max_value=len(original) - 1))
    mutated = bytearray(original)
    mutated[position] = data.draw(st.integers(min_value=0, max_value=255))
    for name, content in (("cut.pkl", original[:cut]), ("mutated.pkl", bytes(mutated))):
        path = tmp_path / name
        path.write_bytes(content)
        (found,) = analyze_pickle(path, tmp_path, PYTHON)
        if name == "cut.pkl":
            assert found.verdict != "safe", found


def test_a_teams_trusted_modules_make_their_classes_safe_and_the_report_says_so(tmp_path: Path):
    """`pickles.trusted: [tests]`: this module's classes, named and made by the pickle, are vouched for; a
    call of one while loading is not."""
    path = tmp_path / "model.pkl"
    path.write_bytes(pickle.dumps(Hashless(), protocol=4))
    (untrusted,) = analyze_pickle(path, tmp_path, PYTHON)
    (trusted,) = analyze_pickle(path, tmp_path, PYTHON, trusted=["tests"])
    assert untrusted.verdict == "unverified"
    assert trusted.verdict == "safe" and trusted.trusted == (f"{__name__}.Hashless",)
    path.write_bytes(pickle.dumps(Reduces(Hashless, 1)))
    (called,) = analyze_pickle(path, tmp_path, PYTHON, trusted=["tests"])
    assert called.verdict == "unverified"


class Hashless:
    """A team's own class, pickled by reference."""

    def __init__(self, value=0):
        self.value = value
