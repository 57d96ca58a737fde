"""What unpickling may build: the allow-list that lets the static stage call a pickle `safe`.

A pickle is safe only when every call the unpickler makes (REDUCE) calls a global listed in BUILDERS (or
cloudpickle's machinery, or a Cython `__pyx_unpickle_…` helper of a library), and every other global it
names is a class or function of a library models are made of. Anything else is `unverified`: not known to
be harmful, but nothing the static stage can vouch for, so it is loaded only inside the cage. Hand-written
because the scanners on PyPI keep deny-lists (picklescan) or an allow-list of imports that does not tell
a call from a reference (fickling's ML_ALLOWLIST).
"""

from __future__ import annotations

import importlib
import sys
import types
from collections.abc import Sequence
from functools import cache

from mlflow_validator.stages.static.pickles.program import CLOUDPICKLE_MODULES

# Called by the unpickler, they make a value from plain arguments and run nothing of the pickle's choosing.
BUILDERS = frozenset(
    {
        # builtins and the standard library's value types
        *(f"builtins.{name}" for name in ("set", "frozenset", "list", "dict", "tuple", "bytearray", "bytes")),
        *(f"builtins.{name}" for name in ("complex", "int", "float", "str", "bool", "slice", "range", "object")),
        *(f"builtins.{name}" for name in ("staticmethod", "classmethod", "property")),  # keep a function
        "_codecs.encode",  # protocols 0-2 write bytes as encode(text, 'latin1')
        "copyreg._reconstructor",
        "copyreg.__newobj__",
        "copyreg.__newobj_ex__",
        *(f"collections.{name}" for name in ("OrderedDict", "defaultdict", "deque", "Counter")),
        *(f"datetime.{name}" for name in ("datetime", "date", "time", "timedelta", "timezone")),
        "decimal.Decimal",
        "fractions.Fraction",
        "uuid.UUID",
        "uuid.SafeUUID",
        "pathlib.PurePosixPath",
        "pathlib.PosixPath",
        # They keep what they are given (a function among it) without calling it.
        "functools.partial",
        *(f"operator.{name}" for name in ("itemgetter", "attrgetter", "methodcaller")),
        # numpy
        *(f"numpy.{core}.multiarray.{name}" for core in ("core", "_core") for name in ("_reconstruct", "scalar")),
        *(f"numpy.{core}.numeric._frombuffer" for core in ("core", "_core")),
        "numpy.dtype",
        "numpy.ma.core._mareconstruct",
        *(
            f"numpy.random._pickle.{name}"
            for name in ("__randomstate_ctor", "__bit_generator_ctor", "__generator_ctor")
        ),
        # pandas
        "pandas._libs.internals._unpickle_block",
        "pandas.core.internals.managers.BlockManager",
        "pandas.core.internals.managers.SingleBlockManager",
        "pandas.core.indexes.base._new_Index",
        "pandas._libs.tslibs.timestamps._unpickle_timestamp",
        "pandas._libs.tslibs.timedeltas._timedelta_unpickle",
        "pandas._libs.tslibs.nattype.__nat_unpickle",
        "pandas.StringDtype",
        "pandas.PeriodDtype",
        "pandas.IntervalDtype",
        "pandas.core.indexes.interval._new_IntervalIndex",
        "pandas.core.indexes.period._new_PeriodIndex",
        # scikit-learn's Cython trees, made from their sizes (their nodes come through __setstate__)
        "sklearn.tree._tree.Tree",
        "pandas.CategoricalDtype",
        "pandas.core.dtypes.dtypes.CategoricalDtype",
        "pandas.core.arrays.string_.StringDtype",
        "types.SimpleNamespace",
        "types.MappingProxyType",  # a read-only view of the dict it is given
        # statsmodels' state-space models (ARIMA, SARIMAX...): Cython classes rebuilt from their arrays, in each of
        # their four precisions
        *(
            f"statsmodels.tsa.statespace.{module}.{precision}{name}"
            for module, name in (
                ("_initialization", "Initialization"),
                ("_representation", "Statespace"),
                ("_kalman_filter", "KalmanFilter"),
                ("_kalman_smoother", "KalmanSmoother"),
                ("_simulation_smoother", "SimulationSmoother"),
            )
            for precision in "sdcz"
        ),
        # pyarrow, which pandas' string columns are made of
        *(f"pyarrow.lib.{name}" for name in ("_restore_array", "py_buffer", "type_for_alias", "field", "schema")),
    }
)
# Builders that call what they are given: safe only with their first argument alone (its defaults build a
# numpy bit generator), never with a callable of the pickle's choosing as a second one.
ONE_ARGUMENT_BUILDERS = frozenset(
    f"numpy.random._pickle.__{kind}_ctor" for kind in ("randomstate", "bit_generator", "generator")
)
# Libraries whose classes a pickle may name (made with __new__ and given their state, their own code doing the
# rest) and whose plain functions it may hold (FunctionTransformer(np.log1p)) without calling them.
LIBRARIES = frozenset(
    {
        "numpy", "pandas", "scipy", "sklearn", "lightgbm", "xgboost", "statsmodels", "catboost", "pyarrow",
        "joblib", "skops", "mlflow", "collections", "datetime", "decimal", "fractions", "uuid", "enum", "abc",
        "typing", "math", "operator", "functools", "re", "builtins", "numbers", "dataclasses",
    }
)  # fmt: skip
# Classes a by-value class may be made by (cloudpickle's type_constructor): type's own machinery.
METACLASSES = frozenset({"builtins.type", "abc.ABCMeta", "enum.EnumMeta", "enum.EnumType"})
# Standard-library modules whose import has an effect of its own.
EFFECTFUL_IMPORTS = frozenset({"antigravity", "this", "turtle", "idlelib", "tkinter", "webbrowser", "pdb", "code"})


def is_builder(dotted: str) -> bool:
    """Without its arguments: see ONE_ARGUMENT_BUILDERS, which the judge checks with them."""
    module, _, name = dotted.rpartition(".")
    if module in CLOUDPICKLE_MODULES:
        return True
    if name.startswith("__pyx_unpickle_") and module.split(".")[0] in LIBRARIES:
        return True  # Cython's generated unpickler: a checksum of the fields, then their values set
    return dotted in BUILDERS or dotted in ONE_ARGUMENT_BUILDERS


@cache
def _resolved(module: str, name: str) -> object | None:
    """The library object `module.name` names, imported here (the library's code, never the pickle's);
    None when it is not a library's or does not exist."""
    if module.split(".")[0] not in LIBRARIES:
        return None
    try:
        found: object = importlib.import_module(module)
        for part in name.split("."):
            found = getattr(found, part)
    except Exception:  # ImportError, AttributeError, or whatever a library's import raises here
        return None
    # `joblib` + `os.system` names os.system: what is found must be the library's own, not a module it imported.
    defined_in = getattr(found, "__module__", None) or type(found).__module__
    return found if str(defined_in).split(".")[0] in LIBRARIES else None


def is_library_value(module: str, name: str) -> bool:
    """A class, or a function held without being called, of a library models are made of."""
    found = _resolved(module, name)
    return isinstance(found, type | types.FunctionType | types.BuiltinFunctionType) or type(found).__name__ in (
        "ufunc",
        "_ArrayFunctionDispatcher",
        "cython_function_or_method",
    )


# `__new__` methods that allocate and ignore their arguments: object's and the builtin containers' (a dict
# subclass's values come through SETITEMS, a list's through APPENDS), and scipy's LinearOperator's, which only
# picks the class to allocate.
HARMLESS_NEW = frozenset({"object.__new__", "dict.__new__", "list.__new__", "set.__new__", "LinearOperator.__new__"})


def made_without_code(module: str, name: str) -> bool:
    """NEWOBJ makes `cls.__new__(cls, *args)`: harmless for a library class whose __new__ allocates and nothing
    else (its state then comes through __setstate__ or the instance dict); numpy.memmap's own __new__ opens files."""
    found = _resolved(module, name)
    new = getattr(found, "__new__", None)
    defined_in = str(getattr(new, "__module__", None) or "builtins").split(".")[0]
    return (
        isinstance(found, type)
        and getattr(new, "__qualname__", "") in HARMLESS_NEW
        and (defined_in in ("builtins", "scipy"))
    )


def is_trusted(module: str, trusted: Sequence[str]) -> bool:
    """`module` is one of the team's trusted modules (`pickles.trusted`) or inside one."""
    return any(module == prefix or module.startswith(prefix + ".") for prefix in trusted)


def is_harmless_import(module: str) -> bool:
    """cloudpickle's subimport: importing a library, or the standard library, runs nothing of the pickle's."""
    root = module.split(".")[0]
    return root in LIBRARIES or (root in sys.stdlib_module_names and root not in EFFECTFUL_IMPORTS)
