"""Reading pickles without loading them: real pickles made here, never loaded by anyone."""

import ast
import builtins
import collections
import dis
import os
import pickle
import socket
import typing

import cloudpickle
import joblib
import numpy as np
import pytest
from fickling.fickle import InterpreterLimits
from hypothesis import given
from hypothesis import strategies as st
from joblib.numpy_pickle import NumpyArrayWrapper
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

from mlflow_validator.stages.static import pickles
from mlflow_validator.stages.static.pickles import analyze_model, analyze_pickle, is_unsafe_global, pickle_files
from mlflow_validator.stages.static.pickles.bytecode import code_facts
from mlflow_validator.stages.static.pickles.program import Program

PYTHON = "3.11.7"
CARRIED = "calls code carried in the pickle at load time"
MODULE_TYPEVAR = typing.TypeVar("MODULE_TYPEVAR")  # cloudpickle pickles it as getattr(<this module>, name)


class Reduces:
    """Unpickling it calls `func(*args)`."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def analyze(tmp_path, data: bytes, name="model.pkl", python_version=PYTHON):
    path = tmp_path / name
    path.write_bytes(data)
    return analyze_pickle(path, tmp_path, python_version)[0]


def hand_made_call(module: str, name: str, *args: str) -> bytes:
    """A pickle calling module.name(*args), for callables the test guards make unpicklable (subprocess.Popen)."""
    arguments = "".join(f"V{arg}\n" for arg in args)
    return b"\x80\x02" + f"c{module}\n{name}\n({arguments}tR.".encode()


@pytest.fixture(scope="module")
def fitted():
    X, y = load_iris(return_X_y=True)
    return LogisticRegression(max_iter=300).fit(X, y)


# Unsafe calls ------------------------------------------------------------------------------------------------


def test_os_system_is_named_with_its_argument_and_nothing_runs(tmp_path):
    marker = tmp_path / "marker"
    findings = analyze(tmp_path, pickle.dumps(Reduces(os.system, f"touch {marker}")))
    assert findings.unsafe == (f"{os.system.__module__}.system('touch {marker}')",)
    assert findings.globals == (f"{os.system.__module__}.system",)
    assert not findings.error
    assert not marker.exists()


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (hand_made_call("subprocess", "Popen", "id"), "subprocess.Popen('id')"),
        (
            pickle.dumps(Reduces(builtins.eval, "__import__('os').getcwd()")),
            "builtins.eval(\"__import__('os').getcwd()\")",
        ),
        (pickle.dumps(Reduces(builtins.exec, "x = 1")), "builtins.exec('x = 1')"),
        (pickle.dumps(Reduces(socket.socket)), "socket.socket()"),
    ],
)
def test_dangerous_callables_are_reported(tmp_path, data, expected):
    assert analyze(tmp_path, data).unsafe == (expected,)


def test_a_dangerous_global_imported_but_not_called_is_still_reported(tmp_path):
    findings = analyze(tmp_path, pickle.dumps({"hook": os.system}))
    assert findings.unsafe == (f"{os.system.__module__}.system",)


def test_long_arguments_are_truncated(tmp_path):
    (reason,) = analyze(tmp_path, pickle.dumps(Reduces(builtins.eval, "1 + " * 100 + "1"))).unsafe
    assert len(reason) == pickles.MAX_RENDERED
    assert reason.startswith("builtins.eval('1 + 1 + ") and reason.endswith("...")


def test_a_dangerous_callable_fetched_with_getattr_is_reported(tmp_path):
    findings = analyze(tmp_path, cloudpickle.dumps(Reduces(getattr, os, "system")))
    assert findings.unsafe == ("os.system (through getattr)",)


def test_calling_what_getattr_fetched_from_an_object_is_reported(tmp_path):
    counter = collections.Counter()
    (reason,) = analyze(tmp_path, pickle.dumps(Reduces(counter.update, {"a": 1}))).unsafe
    assert reason == "calls getattr(...).update({'a': 1}) at load time"


def test_is_unsafe_global():
    assert is_unsafe_global("posix", "system")
    assert is_unsafe_global("os.path", "join")  # every name under os is
    assert not is_unsafe_global("functools", "partial")  # it keeps a function; calling what it made is judged
    assert not is_unsafe_global("operator", "itemgetter")
    assert is_unsafe_global("builtins", "eval")
    assert is_unsafe_global("numpy", "load") and is_unsafe_global("pandas", "read_pickle")  # inner pickles
    assert not is_unsafe_global("builtins", "object")
    assert not is_unsafe_global("cloudpickle.cloudpickle", "_make_function")
    assert not is_unsafe_global("numpy", "dtype")


# cloudpickle: code carried by value --------------------------------------------------------------------------


def by_value_model():
    class Model:
        def predict(self, x):
            import sklearn.linear_model

            token = os.environ["MODEL_TOKEN"]
            other = os.getenv("OTHER")
            with open("/home/alice/data.csv") as handle:
                return sklearn.linear_model, token, other, handle.read()

    return Model()


def test_a_by_value_method_imports_reads_the_environment_and_opens_a_path(tmp_path):
    findings = analyze(tmp_path, cloudpickle.dumps(by_value_model()))
    assert findings.unsafe == ()
    assert "sklearn.linear_model" in findings.imports
    assert findings.env_vars == ("MODEL_TOKEN", "OTHER")
    assert findings.absolute_paths == ("/home/alice/data.csv",)
    assert findings.note == ""
    assert "cloudpickle.cloudpickle._make_function" in findings.globals


def test_bytecode_is_decoded_as_dis_decodes_it():
    for function in (by_value_model().predict, pickle_files, analyze_pickle, pickles._Feed.__iter__):
        code = function.__code__
        expected = [
            (i.opname, i.argval)
            for i in dis.get_instructions(code)
            if i.opname in {"LOAD_CONST", "IMPORT_NAME", *pickles.NAME_LOADS}
        ]
        decoded = pickles._instructions(code.co_code, list(code.co_consts), list(code.co_names))
        assert [(i.opname, i.argval) for i in decoded if i.opname in {e[0] for e in expected}] == expected


def test_bytecode_of_a_python_this_machine_lacks_is_not_read_and_nothing_is_guessed(tmp_path):
    findings = analyze(tmp_path, cloudpickle.dumps(by_value_model()), python_version="3.99.0")
    assert "bytecode of Python 3.99 not read: this machine has no Python 3.99" in findings.note
    assert findings.env_vars == ()
    assert findings.imports == ("os",)  # only cloudpickle's subimport: the bytecode was not read
    assert findings.absolute_paths == ("/home/alice/data.csv",)


SERVICE_KEY = "SERVICE_TOKEN"


def reads_by_computed_names():
    """A function cloudpickle carries by value (it is not importable), with the global it reads."""

    def reads(prefix):
        name = "API_" + "KEY"
        variable = "DB_URL"
        found = os.environ[variable], os.getenv(SERVICE_KEY), os.environ.get(name, "")
        guessed = os.environ[f"{prefix}_X"], os.getenv(prefix), os.environ.get(prefix.upper())
        whole = "X" in os.environ, dict(os.environ), os.environ.copy()
        try:
            import orjson
        except ImportError:
            orjson = None
        return found, guessed, whole, orjson

    return reads


def test_a_name_held_by_a_variable_or_a_carried_global_is_followed_and_a_computed_one_is_not_guessed(tmp_path):
    findings = analyze(tmp_path, cloudpickle.dumps(reads_by_computed_names()))
    assert findings.env_vars == ("API_KEY", "DB_URL", "SERVICE_TOKEN")
    assert findings.computed_env_reads == 6, "3 names computed, and the environment reached 3 ways not by name"
    assert "orjson" not in findings.imports  # `except ImportError` makes it optional, as in source


def test_a_global_another_carried_function_rebinds_is_no_constant_and_the_aliased_environment_is_counted(tmp_path):
    def rebinds():
        global SERVICE_KEY
        SERVICE_KEY = "UNDECLARED_SECRET"

    def reads():
        environment = os.environ
        return os.getenv(SERVICE_KEY), environment["DB_PASSWORD"]

    findings = analyze(tmp_path, cloudpickle.dumps([rebinds, reads]))
    assert (findings.env_vars, findings.computed_env_reads) == ((), 2)


def test_a_variable_stored_twice_is_not_a_constant(tmp_path):
    def either(flag):
        name = "FIRST"
        if flag:
            name = "SECOND"
        return os.environ[name]

    findings = analyze(tmp_path, cloudpickle.dumps(either))
    assert (findings.env_vars, findings.computed_env_reads) == ((), 1)


def code_arguments(code: bytes, table: bytes) -> list[ast.expr]:
    """types.CodeType's arguments as the decompiled pickle holds them, around hostile bytecode and table."""
    model = reads_by_computed_names().__code__
    constants = [ast.Constant(c) for c in model.co_consts if isinstance(c, str | int | type(None))]
    names = [ast.Constant(n) for n in model.co_names]
    zeros = [ast.Constant(0)] * 6
    return [*zeros, ast.Constant(code), ast.Tuple(constants), ast.Tuple(names), *zeros, ast.Constant(table)]


@given(code=st.binary(max_size=4000), table=st.binary(max_size=600))
def test_hostile_bytecode_and_exception_tables_are_read_without_crash_or_hang(code, table):
    program = Program(codes={"_var1": code_arguments(code, table)})
    facts = code_facts(program, "3.11.7")
    assert all(name and "=" not in name for name in facts.env_vars)


def test_a_long_run_of_varint_chunks_is_no_exception_table():
    continuation = reads_by_computed_names().__code__.co_code
    program = Program(codes={"_var1": code_arguments(continuation, b"\x7f" * 1_000_000)})
    assert code_facts(program, "3.11.7").env_vars == frozenset({"API_KEY", "DB_URL"})


def test_subimport_and_module_level_references_are_harmless(tmp_path):
    def uses_numpy():
        return np.zeros(3), MODULE_TYPEVAR

    findings = analyze(tmp_path, cloudpickle.dumps([uses_numpy, MODULE_TYPEVAR]))
    assert findings.unsafe == ()
    assert "numpy" in findings.imports
    assert "builtins.getattr" in findings.globals


def test_calling_a_by_value_function_at_load_time_is_unsafe(tmp_path):
    def evil():
        return os.getcwd()

    class Sneaky:
        def __reduce__(self):
            return evil, ()

    findings = analyze(tmp_path, cloudpickle.dumps(Sneaky()))
    assert findings.unsafe == (f"{CARRIED} (function `evil`)",)


def test_a_by_value_class_whose_constructor_runs_at_load_time_is_unsafe(tmp_path):
    class Sneaky:
        def __init__(self, x):
            self.x = x

        def __reduce__(self):
            return Sneaky, (1,)

    assert analyze(tmp_path, cloudpickle.dumps(Sneaky(1))).unsafe == (f"{CARRIED} (class `Sneaky`, its __init__)",)


def test_a_by_value_setstate_runs_at_load_time(tmp_path):
    class Stateful:
        def __setstate__(self, state):
            self.__dict__.update(state)

    stateful = Stateful()
    stateful.x = 1  # no state, no BUILD
    assert analyze(tmp_path, cloudpickle.dumps(stateful)).unsafe == (f"{CARRIED} (class `Stateful`, its __setstate__)",)


def test_a_by_value_function_handed_to_a_caller_is_unsafe(tmp_path):
    def evil(x):
        return x

    (reason,) = analyze(tmp_path, cloudpickle.dumps(Reduces(map, evil, [1]))).unsafe
    assert reason == "passes code carried in the pickle to builtins.map at load time (function `evil`)"


def test_by_value_functions_kept_in_containers_are_harmless(tmp_path):
    counts = collections.defaultdict(lambda: 0)
    counts["a"] += 1

    class WithProperty:
        @property
        def value(self):
            return 1

        @staticmethod
        def helper():
            return 2

    findings = analyze(tmp_path, cloudpickle.dumps([counts, WithProperty()]))
    assert findings.unsafe == ()


# numpy and scikit-learn --------------------------------------------------------------------------------------


def test_a_numpy_2_array_references_numpy_core(tmp_path):
    findings = analyze(tmp_path, pickle.dumps(np.arange(3)))
    assert findings.numpy_core is (np.__version__ >= "2")
    assert findings.unsafe == ()


@pytest.mark.parametrize("dumps", [pickle.dumps, cloudpickle.dumps])
def test_a_fitted_model_is_safe(tmp_path, fitted, dumps):
    findings = analyze(tmp_path, dumps(fitted))
    assert findings.unsafe == ()
    assert (findings.error, findings.note) == ("", "")
    assert "sklearn.linear_model._logistic.LogisticRegression" in findings.globals


@pytest.mark.parametrize("compress", [0, 3, ("gzip", 3), ("bz2", 3), ("xz", 3), ("lzma", 3)])
def test_a_joblib_dump_is_read_past_its_arrays(tmp_path, fitted, compress):
    path = tmp_path / "model.joblib"
    joblib.dump(
        {"arrays": [np.arange(5.0), np.array(["a", "bcd"]), np.zeros((2, 3), dtype="u1")], "m": fitted},
        path,
        compress=compress,
    )
    findings = analyze_pickle(path, tmp_path, PYTHON)[0]
    assert findings.unsafe == ()
    assert (findings.error, findings.note) == ("", "")
    assert "sklearn.linear_model._logistic.LogisticRegression" in findings.globals  # after the arrays


@pytest.mark.parametrize("compress", [0, 3])
def test_a_payload_after_joblib_arrays_is_found(tmp_path, compress):
    path = tmp_path / "model.joblib"
    marker = tmp_path / "marker"
    joblib.dump([np.arange(10.0), Reduces(os.system, f"touch {marker}")], path, compress=compress)
    assert analyze_pickle(path, tmp_path, PYTHON)[0].unsafe == (f"{os.system.__module__}.system('touch {marker}')",)


def test_an_object_array_in_a_joblib_dump_is_read(tmp_path):
    path = tmp_path / "model.joblib"
    joblib.dump([np.array([Reduces(os.system, "id")], dtype=object), np.arange(3)], path)
    findings = analyze_pickle(path, tmp_path, PYTHON)[0]
    assert findings.unsafe == (f"{os.system.__module__}.system('id')",)
    assert (findings.error, findings.note) == ("", "")


def fake_array_wrapper_hiding(payload: object) -> bytes:
    """A plain pickle whose made-up joblib array wrapper claims the payload's bytes as array data."""
    size = 0
    while True:
        wrapper = NumpyArrayWrapper.__new__(NumpyArrayWrapper)
        wrapper.__dict__.update(subclass=np.ndarray, shape=(size,), order="C", dtype=np.dtype("u1"))
        wrapper.__dict__.update(allow_mmap=False, numpy_array_alignment_bytes=None)
        data = pickle.dumps([wrapper, payload], protocol=2)
        hidden = len(data) - len(pickle.dumps([wrapper], protocol=2))
        if hidden == size:
            return data
        size = hidden


def test_a_made_up_array_wrapper_does_not_hide_what_pickle_load_would_run(tmp_path):
    data = fake_array_wrapper_hiding(Reduces(os.system, "id"))
    assert analyze(tmp_path, data).unsafe == (f"{os.system.__module__}.system('id')",)


def test_skops_untrusted_types_are_listed(tmp_path, fitted):
    import skops.io

    path = tmp_path / "model.skops"
    skops.io.dump(fitted, path)
    findings = analyze_pickle(path, tmp_path, PYTHON)[0]
    assert findings.kind == "skops"
    assert findings.untrusted_types == tuple(skops.io.get_untrusted_types(file=path))
    assert findings.unsafe == ()
    assert findings.error == ""


# What cannot be read -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("content", [b"pickle", b"", b"\x80\x05\xff\xff", "é".encode()])
def test_a_file_that_is_not_a_pickle_gets_an_error(tmp_path, content):
    findings = analyze(tmp_path, content)
    assert findings.error.startswith("not a pickle")
    assert findings.unsafe == ()


def test_a_truncated_pickle_gets_an_error_and_what_was_read(tmp_path, fitted):
    findings = analyze(tmp_path, pickle.dumps(fitted)[:-40])
    assert "truncated or corrupt" in findings.error
    assert "sklearn.linear_model._logistic.LogisticRegression" in findings.globals


def test_protocol_0_pickles_are_read(tmp_path, fitted):
    findings = analyze(tmp_path, pickle.dumps({"model": fitted, "x": 1.5}, protocol=0))
    assert findings.unsafe == ()
    assert (findings.error, findings.note) == ("", "")
    assert "copyreg._reconstructor" in findings.globals


def test_lz4_is_not_read(tmp_path):
    findings = analyze(tmp_path, b"\x04\x22\x4d\x18rest", name="model.joblib")
    assert findings.note.startswith("not read: lz4-compressed")
    assert findings.error == ""


def test_a_bad_skops_file_gets_an_error(tmp_path):
    findings = analyze(tmp_path, b"not a zip", name="model.skops")
    assert findings.kind == "skops"
    assert findings.error.startswith("not a skops file")


def test_bytes_after_the_pickle_are_noted(tmp_path):
    assert analyze(tmp_path, pickle.dumps(1) + b"extra").note == "5 bytes after the pickle's end not read"


def test_large_files_are_not_decompiled(tmp_path, monkeypatch):
    monkeypatch.setattr(pickles, "MAX_DECOMPILED_BYTES", 10)
    findings = analyze(tmp_path, pickle.dumps(list(range(10))))
    assert findings.note.startswith("not read:")
    assert (findings.error, findings.verdict) == ("", "unverified")


def test_fickling_limits_leave_a_partial_reading(tmp_path, monkeypatch):
    monkeypatch.setattr(pickles, "INTERPRETER_LIMITS", InterpreterLimits(max_opcodes=50))
    findings = analyze(tmp_path, pickle.dumps([*range(100), Reduces(os.system, "id")]))
    assert findings.note.startswith("only the beginning was read: fickling's limit reached")
    assert (findings.error, findings.verdict) == ("", "unverified")


def test_decompression_is_bounded(tmp_path, monkeypatch):
    monkeypatch.setattr(pickles, "MAX_DECOMPRESSED_BYTES", 1000)
    path = tmp_path / "model.joblib"
    joblib.dump(np.zeros(10_000), path, compress=3)
    findings = analyze_pickle(path, tmp_path, PYTHON)[0]
    assert (findings.note, findings.verdict) == ("not read: decompresses to more than 1000 bytes", "unverified")


def test_fickling_does_not_print(tmp_path, capsys):
    analyze(tmp_path, b"\x80\x04K\x01K\x02\x93.")  # STACK_GLOBAL on ints: fickling warns on stdout
    analyze(tmp_path, b"\x80\x04h\x05.")  # a memo key never stored: fickling warns on stderr
    assert capsys.readouterr() == ("", "")


# Which files -------------------------------------------------------------------------------------------------


def test_pickle_files_by_suffix_and_first_byte(tmp_path, fitted):
    (tmp_path / "data").mkdir()
    (tmp_path / "python_model.pkl").write_bytes(pickle.dumps(1))
    (tmp_path / "data" / "model").write_bytes(pickle.dumps(fitted))  # no suffix: found by its first byte
    (tmp_path / "data" / "model.joblib").write_bytes(b"x")
    (tmp_path / "model.skops").write_bytes(b"x")
    (tmp_path / "MLmodel").write_text("flavors: {}\n")
    (tmp_path / "old.pkl.txt").write_text("not a pickle")
    (tmp_path / "link.pkl").symlink_to(tmp_path / "python_model.pkl")
    names = [p.relative_to(tmp_path).as_posix() for p in pickle_files(tmp_path)]
    assert names == ["data/model", "data/model.joblib", "model.skops", "python_model.pkl"]


def test_analyze_model_reads_every_file_sorted(tmp_path, fitted):
    (tmp_path / "b.pkl").write_bytes(pickle.dumps(Reduces(os.system, "id")))
    (tmp_path / "a.pkl").write_bytes(cloudpickle.dumps(fitted))
    findings = analyze_model(tmp_path, PYTHON)
    assert [f.file for f in findings] == ["a.pkl", "b.pkl"]
    assert [bool(f.unsafe) for f in findings] == [False, True]


def test_findings_are_frozen(tmp_path):
    findings = analyze(tmp_path, pickle.dumps(1))
    with pytest.raises(AttributeError):
        findings.unsafe = ()


@pytest.mark.parametrize(
    ("text", "is_path"),
    [
        ("/home/alice/lookup.csv", True),
        ("/dbfs/FileStore/tables/prices.parquet", True),
        ("/api/v1/predict", False),  # a URL route
        ("/%Y/%m/%d", False),  # a strftime pattern
        ("/items/{item_id}", False),
        ("/proc/self/status", False),
    ],
)
def test_only_file_paths_count_as_absolute_paths(text, is_path):
    from mlflow_validator.stages.static.pickles.bytecode import _is_absolute_path

    assert _is_absolute_path(text) is is_path
