"""Which imports and calls of a decompiled pickle are unsafe (picklescan's dangerous globals and a few more,
code carried in the pickle that runs at load time), and which are unverified: outside the allow-list
(allowed.py), so that the static stage cannot vouch for them."""

from __future__ import annotations

import ast
import collections
import re
from collections.abc import Iterable, Sequence

from picklescan.scanner import _unsafe_globals

from mlflow_validator.stages.static.pickles.allowed import (
    METACLASSES,
    ONE_ARGUMENT_BUILDERS,
    is_builder,
    is_harmless_import,
    is_library_value,
    is_trusted,
    made_without_code,
)
from mlflow_validator.stages.static.pickles.program import (
    CLOUDPICKLE_MODULES,
    GETATTR,
    METHOD_WRAPPERS,
    Program,
    Site,
    Value,
    constant,
    elements,
)

MAX_RENDERED = 120

# What cloudpickle (any version since 1.0) emits to rebuild by-value classes and functions. Calling them builds
# objects; running the code they build is judged where it happens.
CLOUDPICKLE_RECONSTRUCTORS = frozenset(
    {
        "_builtin_type",
        "_make_function",
        "_function_setstate",
        "_make_skeleton_class",
        "_make_skeleton_enum",
        "_class_setstate",
        "_make_cell",
        "_make_empty_cell",
        "_cell_set",
        "_make_dict_keys",
        "_make_dict_values",
        "_make_dict_items",
        "_make_typevar",
        "_enum_getnewargs",
        "_class_getnewargs",
        "_get_dataclass_field_type_sentinel",
        "_dynamic_class_reduce",
        "_file_reconstructor",
        "_create_parametrized_type_hint",
        "_rebuild_tornado_coroutine",
        "_make_skel_func",
        "_fill_function",
        "_rehydrate_skeleton_class",
        "subimport",
        "dynamic_subimport",
        "instance",
    }
)
# Dangerous globals picklescan does not list: each imports, runs or reaches arbitrary code, or loads an inner
# pickle (which runs whatever that one holds).
EXTRA_UNSAFE_GLOBALS: dict[str, Iterable[str] | str] = {
    "builtins": {"__import__", "setattr", "delattr", "globals", "vars"},
    "importlib": "*",
    "_imp": "*",
    "marshal": "*",
    "_posixsubprocess": "*",
    "multiprocessing": "*",
    "codeop": "*",
    "zipimport": "*",
    "cloudpickle": {"load", "loads"},
    "cloudpickle.cloudpickle": {"load", "loads"},
    "dill": "*",
    "joblib": {"load"},
    "joblib.numpy_pickle": {"load", "_unpickle", "NumpyUnpickler"},
    "numpy.lib.npyio": {"load"},
    "numpy.lib._npyio_impl": {"load"},
    "numpy.lib.format": {"read_array", "open_memmap"},
    "pandas": {"read_pickle", "eval", "read_clipboard"},
    "pandas.io.pickle": {"read_pickle"},
    "pandas.core.computation.eval": {"eval"},
    "scipy.io": {"loadmat"},
    "torch": {"load"},
    "joblib.numpy_pickle_compat": "*",  # its wrappers load files named in the pickle (np.load, allow_pickle)
    "numpy": {"load", "fromfile", "memmap"},
}
# What picklescan lists but builds a value and runs nothing: a UUID (picklescan lists all of `uuid`, whose
# other functions start processes), and what keeps a function without calling it (calling what they made is
# a call of a computed callable, judged where it happens).
NOT_UNSAFE = frozenset(
    {"uuid.UUID", "uuid.SafeUUID", "functools.partial", "operator.itemgetter", "operator.attrgetter"}
    | {"operator.methodcaller"}
)
# Hooks a class carried in the pickle may define. These run while it loads whatever else is in it: the
# finaliser when an instance made on the way is dropped.
UNSAFE_HOOKS = frozenset({"__del__"})
# The dunders a carried class may define and still be vouched for: none of them is called by unpickling
# (__init__ and __new__ are judged where a call reaches them). Any other dunder may be run by a protocol
# while the pickle loads (a key's hash, str() of an instance, a descriptor, __init_subclass__, __eq__):
# the static stage cannot vouch for it.
PLAIN_DUNDERS = frozenset(
    {
        "__init__", "__new__", "__module__", "__qualname__", "__doc__", "__dict__", "__weakref__", "__slots__",
        "__annotations__", "__firstlineno__", "__static_attributes__", "__orig_bases__", "__parameters__",
        "__getstate__", "__reduce__", "__reduce_ex__", "__call__", "__repr__", "__abstractmethods__",
    }
)  # fmt: skip
# Dunders an instance's state may name without effect: statsmodels' results document themselves this way.
NAMING_DUNDERS = frozenset({"__doc__", "__module__", "__name__", "__qualname__"})
# Keys that make BUILD's state an instance's method: a later BUILD, APPEND or APPENDS would call it.
CALLED_BY_UNPICKLING = frozenset({"__setstate__", "append", "extend"})
# Globals that take a function to keep it, never to call it while unpickling.
FUNCTION_HOLDERS = METHOD_WRAPPERS | {"builtins.property", "collections.defaultdict", "copyreg._reconstructor"}
# cloudpickle pickles sys.stdout and sys.stderr as getattr(sys, ...): harmless.
HARMLESS_ATTRIBUTES = frozenset({"sys.stdout", "sys.stderr"})
# What the unpickler calls on a class or an instance, by the method fickling writes for it.
UNPICKLER_METHODS = {
    "__new__": "__new__",
    "__setstate__": "__setstate__",
    "append": "append",
    "extend": "extend",
    "update": "__setitem__",
    "__setitem__": "__setitem__",
}
CONSTRUCTORS = ("__init__", "__new__")
DECOMPILER_NAME = re.compile(r"_var\d+|result")


def _rules() -> dict[str, frozenset[str] | str]:
    merged: dict[str, frozenset[str] | str] = {}
    for table in (_unsafe_globals, EXTRA_UNSAFE_GLOBALS):
        for module, names in table.items():
            # picklescan mixes "*", a bare name ("functools": "partial") and sets of names.
            if names == "*" or merged.get(module) == "*":
                merged[module] = "*"
            else:
                current = merged.get(module, frozenset())
                merged[module] = frozenset(current) | frozenset([names] if isinstance(names, str) else names)
    return merged


UNSAFE_RULES = _rules()


def is_unsafe_global(module: str, name: str) -> bool:
    """Whether a pickle importing `module.name` can run arbitrary code, by picklescan's list and a few more."""
    if (module in CLOUDPICKLE_MODULES and name in CLOUDPICKLE_RECONSTRUCTORS) or f"{module}.{name}" in NOT_UNSAFE:
        return False
    if (
        "." in name
    ):  # protocol 4 names `module` + `a.b`: judge it as module.a + b, and as a + b (`joblib` + `os.system`)
        head, _, tail = name.rpartition(".")
        if is_unsafe_global(f"{module}.{head}", tail) or is_unsafe_global(head, tail):
            return True
    parts = module.split(".")
    for depth in range(len(parts), 0, -1):
        rule = UNSAFE_RULES.get(".".join(parts[:depth]))
        if rule == "*":
            return True
        if rule is not None:
            return depth == len(parts) and (name in rule or name.split(".")[0] in rule)
    return False


def _dangerous(value: Value) -> bool:
    """A global, or an attribute getattr fetched from a module or a global, that is on the unsafe list."""
    return bool(value.module) and is_unsafe_global(value.module, value.name[len(value.module) + 1 :])


def _render(call: ast.Call, callee: str) -> str:
    try:
        text = ast.unparse(ast.Call(ast.Name(callee, ast.Load()), call.args, call.keywords))
    except (RecursionError, ValueError, TypeError, AttributeError):
        text = f"{callee}(...)"
    return text if len(text) <= MAX_RENDERED else text[: MAX_RENDERED - 3] + "..."


def _carried_function(program: Program, args: list[ast.expr]) -> str:
    for arg in args:
        if isinstance(arg, ast.Name) and (held := program.value_of(arg.id)).kind == "function":
            return held.name
    return ""


def _judge_global(program: Program, site: Site) -> str:
    callee, args = site.callee, site.call.args
    if callee.name in GETATTR and len(args) == 2 and isinstance(constant(args[1]), str):
        return ""  # the attribute it fetches is judged where it is used
    if _dangerous(callee):
        return _render(site.call, callee.name)
    keeps = callee.module in CLOUDPICKLE_MODULES or callee.module == "types" or callee.name in FUNCTION_HOLDERS
    if not keeps and (function := _carried_function(program, args)):
        return f"passes code carried in the pickle to {callee.name} at load time (function `{function}`)"
    return ""


def _judge_attribute(site: Site) -> str:
    callee = site.callee
    if callee.carried:
        return f"calls code carried in the pickle at load time (`{callee.name}`)"
    if not callee.module:
        return f"calls {_render(site.call, 'getattr(...).' + callee.name)} at load time"
    return _render(site.call, callee.name) if _dangerous(callee) else ""


def _judge_method(program: Program, site: Site) -> str:
    """BUILD, NEWOBJ, APPENDS, SETITEMS: methods the unpickler calls on what it made."""
    callee = site.callee
    if site.method == "__setstate__" and callee.kind == "global":
        return f"sets attributes of {callee.name} at load time (BUILD on a global)"
    cls = callee.name if callee.kind == "instance" else site.target if callee.kind == "class" else ""
    method = UNPICKLER_METHODS.get(site.method, "")
    if cls and program.value_of(cls).kind == "class" and method in program.class_methods(cls):
        return f"calls code carried in the pickle at load time (class `{program.value_of(cls).name}`, its {method})"
    return ""


def _judge(program: Program, site: Site) -> str:
    """Why the call is unsafe, or ''."""
    callee = site.callee
    if site.method:
        return _judge_method(program, site)
    if callee.kind == "global":
        return _judge_global(program, site)
    if callee.kind == "function":
        return f"calls code carried in the pickle at load time (function `{callee.name}`)"
    if callee.kind == "class":
        carried = [m for m in CONSTRUCTORS if m in program.class_methods(site.target)]
        if not carried:
            return ""
        return f"calls code carried in the pickle at load time (class `{callee.name}`, its {carried[0]})"
    if callee.kind == "attribute":
        return _judge_attribute(site)
    if callee.kind in ("types", "enum", "code", "module"):
        return ""
    return f"calls {_render(site.call, '<computed>')} at load time: a callable the pickle computed"


def _carried_class_hooks(program: Program) -> list[tuple[int, str]]:
    """Code of carried classes that runs because they are made: a finaliser, a metaclass carried too, a
    carried base's __init_subclass__."""
    found = []
    for cls, methods in program.methods.items():
        name = program.value_of(cls).name
        for hook in sorted(methods & UNSAFE_HOOKS):
            found.append((0, f"the class `{name}` carried in the pickle defines {hook}, which runs once it is loaded"))
        hooked = [base for base in program.bases.get(cls, []) if "__init_subclass__" in program.class_methods(base)]
        if hooked:
            base = program.value_of(hooked[0]).name
            found.append(
                (0, f"making the carried class `{name}` runs the __init_subclass__ of its carried base `{base}`")
            )
    for cls, maker in program.metaclasses.items():
        if maker.kind == "class":
            name = program.value_of(cls).name
            found.append((0, f"making the carried class `{name}` runs its carried metaclass `{maker.name}`"))
    return found


def unsafe(program: Program) -> tuple[str, ...]:
    found: list[tuple[int, str]] = _carried_class_hooks(program)
    for site in program.sites:
        if reason := _judge(program, site):
            found.append((site.index, reason))
    called = {s.callee.name for s in program.sites if not s.method and s.callee.kind in ("global", "attribute")}
    for index, value in program.attributes:
        if value.name not in called and value.name not in HARMLESS_ATTRIBUTES and _dangerous(value):
            found.append((index, f"{value.name} (through getattr)"))
    for index, module, name in program.imports:
        dotted = f"{module}.{name}"
        if dotted not in called and (is_unsafe_global(module, name) or name.startswith("<")):
            found.append((index, dotted))
        if DECOMPILER_NAME.fullmatch(name):
            found.append((index, f"{dotted} (a global named like a decompiler variable, which can hide a call)"))
    return tuple(dict.fromkeys(reason for _, reason in sorted(found, key=lambda item: item[0])))


def _carried(program: Program, expr: ast.expr) -> str:
    """The name of the class carried in the pickle that `expr` is, or is an instance of; ''."""
    if not isinstance(expr, ast.Name):
        return ""
    held = program.value_of(expr.id)
    owner = program.value_of(held.name) if held.kind == "instance" else held
    return owner.name if owner.kind == "class" else ""


def _builder_call(program: Program, site: Site) -> str:
    """Why a builder call cannot be vouched for (a carried class or instance in its arguments, whose code
    the builder may run: __init__, __new__, __array_finalize__, __str__ …; a callable handed to a ctor), or ''."""
    callee = site.callee.name
    if callee in ONE_ARGUMENT_BUILDERS and len(site.call.args) + len(site.call.keywords) > 1:
        return f"calls {callee} with a constructor of the pickle's choosing"
    if site.callee.module in CLOUDPICKLE_MODULES:
        return ""  # cloudpickle's machinery takes carried classes; what runs of them is judged elsewhere
    for index, arg in enumerate(site.call.args):
        if not (name := _carried(program, arg)):
            continue
        base = site.call.args[1] if len(site.call.args) > 1 else None
        if (
            callee == "copyreg._reconstructor"
            and index == 0
            and program.value_of(getattr(base, "id", "")).name in ("builtins.object",)
        ):
            continue  # object.__new__(cls): nothing of the class runs
        return f"passes the class `{name}` carried in the pickle to {callee}, which may run its code"
    return ""


def _build_states(program: Program) -> list[str]:
    """BUILD that puts a method into an instance's dict for a later BUILD, APPEND or APPENDS to call, and a
    second BUILD on one object."""
    found: list[str] = []
    built: collections.Counter[str] = collections.Counter()
    for site in program.sites:
        if site.method != "__setstate__" or not site.call.args:
            continue
        built[program.root(site.target)] += 1
        state = site.call.args[0]
        for part in [state, *elements(state)]:
            keys = [constant(key) for key in part.keys] if isinstance(part, ast.Dict) else []
            if any(
                key is None or key in CALLED_BY_UNPICKLING or (str(key).startswith("__") and key not in NAMING_DUNDERS)
                for key in keys
            ):
                found.append(f"BUILD gives `{site.target}` a state that sets a method or a dunder")
    found += [f"BUILD runs twice on `{target}`" for target, count in built.items() if count > 1]
    return found


def unverified(program: Program, trusted: Sequence[str] = ()) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """What the allow-list does not cover: calls of globals not known to build data only (or builders given
    what may run code), globals that are no library's class or function, library classes NEWOBJ makes with
    their own __new__, modules imported while loading, carried classes' dunders, descriptors and metaclasses,
    BUILD states that plant methods. Also the globals accepted only because `trusted` names their module."""
    found: list[str] = []
    accepted: list[str] = []
    called = set()
    for site in program.sites:
        callee = site.callee
        if site.method == "__new__" and callee.kind == "global" and not is_builder(callee.name):
            module, _, name = callee.name.rpartition(".")
            if is_trusted(callee.module or module, trusted):
                accepted.append(callee.name)
            elif not made_without_code(callee.module or module, callee.name[len(callee.module) + 1 :] or name):
                found.append(f"makes {callee.name} with its own __new__ while loading")
        if site.method or callee.kind not in ("global", "attribute", "class"):
            continue  # methods the unpickler calls, carried functions and computed callables: unsafe() judges them
        called.add(callee.name)
        if callee.kind == "class":
            found.append(f"calls the class `{callee.name}` carried in the pickle: its bases' constructors run")
        elif callee.name not in GETATTR and not is_builder(callee.name):
            found.append(f"calls {callee.name} while loading, which is not known to build data only")
        elif reason := _builder_call(program, site):
            found.append(reason)
    for _, module, name in program.imports:
        dotted = f"{module}.{name}"
        if dotted in called or is_builder(dotted) or dotted in METACLASSES or is_library_value(module, name):
            continue
        if is_trusted(module, trusted):
            accepted.append(dotted)
            continue
        found.append(f"names {dotted}, which is not known to be a library's class or function")
    for _, value in program.attributes:
        attribute = value.name[len(value.module) + 1 :]
        if value.name not in called and value.module and not is_library_value(value.module, attribute):
            found.append(f"fetches {value.name} while loading, which is not known to be a library's class or function")
    found += [f"imports {module} while loading" for module in program.modules if not is_harmless_import(module)]
    for cls, maker in program.metaclasses.items():
        if maker.kind == "global" and maker.name not in METACLASSES:
            found.append(f"the carried class `{program.value_of(cls).name}` is made by {maker.name}")
    for cls, methods in program.methods.items():
        for hook in sorted(method for method in methods if method.startswith("__") and method not in PLAIN_DUNDERS):
            found.append(f"the class `{program.value_of(cls).name}` carried in the pickle defines {hook}")
    for cls, held in program.descriptors.items():
        found.append(f"the class `{program.value_of(cls).name}` carried in the pickle holds {', '.join(sorted(held))}")
    found += _build_states(program)
    return tuple(dict.fromkeys(found)), tuple(dict.fromkeys(accepted))
