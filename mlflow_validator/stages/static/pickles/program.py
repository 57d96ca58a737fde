"""The decompiled program: what each name holds, the globals it imports, the calls the unpickler makes,
the states BUILD gives, and the code objects, functions and classes cloudpickle carries by value."""

from __future__ import annotations

import _compat_pickle
import ast
from dataclasses import dataclass, field

# The modules of cloudpickle (any version since 1.0) whose calls rebuild by-value classes and functions.
CLOUDPICKLE_MODULES = frozenset({"cloudpickle", "cloudpickle.cloudpickle", "cloudpickle.cloudpickle_fast"})
GETATTR = frozenset({"builtins.getattr"})
# Wrappers that keep the function they are given (cloudpickle wraps class methods in them).
METHOD_WRAPPERS = frozenset({"builtins.staticmethod", "builtins.classmethod"})
# The `types` that cloudpickle's _builtin_type rebuilds carried code with.
MACHINERY_TYPES = frozenset({"CodeType", "FunctionType", "CellType", "MethodType"})
# Positional arguments of types.CodeType (Python 3.8 and later).
CO_CODE, CO_CONSTS, CO_NAMES, CO_NAME = 6, 7, 8, 11


@dataclass(frozen=True)
class Value:
    """What a name in the decompiled program holds."""

    kind: str  # global, types, code, function, class, enum, module, attribute, instance, other
    # global and attribute: "module.name"; types: a `types` attribute; code, function, class, enum: its name;
    # module: its dotted name; instance: the name bound to its class
    name: str = ""
    module: str = ""  # global and attribute: the module part of `name`
    carried: bool = False  # attribute: taken from something the pickle carries by value


OTHER = Value("other")


@dataclass(frozen=True)
class Site:
    """A call the unpickler makes, with what its callee was bound to at that point."""

    index: int  # of the statement
    call: ast.Call
    callee: Value  # for a method call, what the object the method is called on holds
    method: str = ""  # "__setstate__" (BUILD), "__new__" (NEWOBJ), "append"... for a method call
    target: str = ""  # the name the callee (or the method's object) is bound to


@dataclass
class Program:
    """Names, imports and calls of a decompiled pickle, read statement by statement."""

    bindings: dict[str, Value] = field(default_factory=dict)
    origins: dict[str, ast.expr] = field(default_factory=dict)  # variable -> the expression assigned to it
    setstates: dict[str, ast.expr] = field(default_factory=dict)  # variable -> the state BUILD gave it
    imports: list[tuple[int, str, str]] = field(default_factory=list)  # (statement index, module, name)
    sites: list[Site] = field(default_factory=list)
    attributes: list[tuple[int, Value]] = field(default_factory=list)  # getattr(...) results
    codes: dict[str, list[ast.expr]] = field(default_factory=dict)  # variable -> types.CodeType arguments
    # The globals cloudpickle carries with its functions, over the whole pickle: name -> the values given it (a
    # string, or None for any other value). Functions of one module share one globals dict when loaded.
    carried_globals: dict[str, set[str | None]] = field(default_factory=dict)
    methods: dict[str, set[str]] = field(default_factory=dict)  # by-value class variable -> its carried methods
    bases: dict[str, list[str]] = field(default_factory=dict)  # by-value class variable -> its bases' names
    metaclasses: dict[str, Value] = field(default_factory=dict)  # by-value class variable -> what made it
    descriptors: dict[str, set[str]] = field(default_factory=dict)  # by-value class -> attributes holding objects
    modules: list[str] = field(default_factory=list)  # subimport / dynamic_subimport
    count: int = 0  # statements read

    def read(self, statement: ast.stmt) -> None:
        if isinstance(statement, ast.ImportFrom):
            for alias in statement.names:
                module, name = _python3_name(statement.module or "", alias.name)
                self.imports.append((self.count, module, name))
                self.bindings[alias.asname or alias.name] = Value("global", f"{module}.{name}", module)
        elif isinstance(statement, ast.Import):  # fickling's rendering of the EXT opcodes
            self.imports.append((self.count, "copyreg", "<extension registry>"))
        elif isinstance(statement, ast.Assign) and len(statement.targets) == 1:
            self._assign(statement.targets[0], statement.value)
        elif isinstance(statement, ast.Expr) and isinstance(statement.value, ast.Call):
            if setstate := setstate_call(statement):
                self.setstates[self.root(setstate[0])] = setstate[1]
            self._record(statement.value)
        self.count += 1

    def _assign(self, target: ast.expr, value: ast.expr) -> None:
        if isinstance(target, ast.Subscript) and isinstance(target.value, ast.Name):  # SETITEM on an object
            self._record(ast.Call(ast.Attribute(target.value, "__setitem__"), [target.slice, value], []))
            return
        if not isinstance(target, ast.Name):
            return
        self.origins[target.id] = value
        if isinstance(value, ast.Call):
            self._record(value)
        self.bindings[target.id] = self._evaluate(value, target.id)

    def _record(self, call: ast.Call) -> None:
        func = call.func
        if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name):
            self.sites.append(Site(self.count, call, self.value_of(func.value.id), func.attr, func.value.id))
        elif isinstance(func, ast.Name):
            self.sites.append(Site(self.count, call, self.value_of(func.id), target=func.id))
        else:
            self.sites.append(Site(self.count, call, OTHER))

    def value_of(self, name: str) -> Value:
        return self.bindings.get(name, OTHER)

    def root(self, name: str) -> str:
        """The variable behind BUILD's aliases (`_var2 = _var1`): the memo, and so later references, keep the root."""
        seen = {name}
        value = self.origins.get(name)
        while isinstance(value, ast.Name) and value.id not in seen:
            name = value.id
            seen.add(name)
            value = self.origins.get(name)
        return name

    def _evaluate(self, value: ast.expr, name: str) -> Value:
        if isinstance(value, ast.Name):
            return self.value_of(value.id)
        if not isinstance(value, ast.Call):
            return OTHER
        func = value.func
        if isinstance(func, ast.Attribute) and func.attr == "__new__" and isinstance(func.value, ast.Name):
            return Value("instance", func.value.id)
        if not isinstance(func, ast.Name):
            return OTHER
        callee = self.value_of(func.id)
        if callee.kind == "global":
            return self._global_result(callee, func.id, value.args, name)
        if callee.kind == "types":
            return self._types_result(callee.name, value.args, name)
        if callee.kind == "class":
            return Value("instance", func.id)
        return OTHER

    def _global_result(self, callee: Value, binding: str, args: list[ast.expr], name: str) -> Value:
        """What calling a global makes; by default an instance of it (the global may be a class)."""
        short = callee.name.rpartition(".")[2]
        if callee.module in CLOUDPICKLE_MODULES:
            return self._cloudpickle_result(short, args, name)
        if callee.module == "types":
            return self._types_result(short, args, name)
        if callee.name in GETATTR and len(args) == 2:
            attribute = self._attribute(args[0], args[1])
            self.attributes.append((self.count, attribute))
            return attribute
        if callee.name in METHOD_WRAPPERS and args and isinstance(args[0], ast.Name):
            return self.value_of(args[0].id)
        if callee.name == "copyreg._reconstructor" and args and isinstance(args[0], ast.Name):
            return Value("instance", args[0].id)  # protocols 0 and 1 make instances this way
        return Value("instance", binding)

    def _cloudpickle_result(self, short: str, args: list[ast.expr], name: str) -> Value:
        first = constant(args[0]) if args else None
        if short == "_builtin_type" and isinstance(first, str):
            # getattr(types, name): cloudpickle's machinery for the types it rebuilds; any other name is that
            # attribute of `types`, judged as any global (types.new_class runs what it is given).
            if first in MACHINERY_TYPES:
                return Value("types", first)
            return Value("global", f"types.{first}", "types")
        if short in ("subimport", "dynamic_subimport") and isinstance(first, str):
            self.modules.append(first)
            return Value("module", first)
        if short in ("_make_function", "_make_skel_func") and args:
            return Value("function", self._code_name(args[0]))
        if short == "_function_setstate" and len(args) > 1:
            self._carried_globals(args[0], args[1])
        if short == "_make_skeleton_class" and len(args) > 2:
            self.bases[name] = [b.id for b in elements(args[2]) if isinstance(b, ast.Name)]
            self.metaclasses[name] = self.value_of(args[0].id) if isinstance(args[0], ast.Name) else OTHER
            return Value("class", str(constant(args[1])))
        if short == "_make_skeleton_enum" and len(args) > 1:
            return Value("enum", str(constant(args[1])))
        if short in ("_class_setstate", "_rehydrate_skeleton_class") and len(args) > 1:
            self._carried_methods(args[0], args[1])
        return OTHER

    def _types_result(self, type_name: str, args: list[ast.expr], name: str) -> Value:
        if type_name == "CodeType":
            self.codes[name] = list(args)
            return Value("code", str(constant(args[CO_NAME])) if len(args) > CO_NAME else "?")
        if type_name == "FunctionType" and args:
            return Value("function", self._code_name(args[0]))
        if type_name == "MethodType" and args and isinstance(args[0], ast.Name):
            held = self.value_of(args[0].id)
            return held if held.kind == "function" else OTHER
        return OTHER

    def _attribute(self, base: ast.expr, attribute: ast.expr) -> Value:
        attr = constant(attribute)
        if not isinstance(attr, str) or not isinstance(base, ast.Name):
            return OTHER
        held = self.value_of(base.id)
        if held.kind == "global":
            return Value("attribute", f"{held.name}.{attr}", held.module)
        if held.kind == "module":
            return Value("attribute", f"{held.name}.{attr}", held.name)
        owner = self.value_of(held.name) if held.kind == "instance" else held
        carried = owner.kind in ("function", "class", "enum")
        return Value("attribute", f"{owner.name}.{attr}" if carried else attr, carried=carried)

    def _carried_globals(self, function: ast.expr, state: ast.expr) -> None:
        """The globals cloudpickle carries with a function (`KEY = "..."` in a notebook): the bytecode's global
        names may then stand for them."""
        parts = elements(state)
        slots = parts[1] if len(parts) > 1 else None
        if not isinstance(function, ast.Name) or not isinstance(slots, ast.Dict):
            return
        carried = next((v for k, v in zip(slots.keys, slots.values, strict=True) if constant(k) == "__globals__"), None)
        if not isinstance(carried, ast.Dict):
            return
        for key, value in zip(carried.keys, carried.values, strict=True):
            held = constant(value)
            self.carried_globals.setdefault(str(constant(key)), set()).add(held if isinstance(held, str) else None)

    def _code_name(self, code: ast.expr) -> str:
        if isinstance(code, ast.Name) and (held := self.value_of(code.id)).kind == "code":
            return held.name
        return "?"

    def _carried_methods(self, cls: ast.expr, state: ast.expr) -> None:
        parts = elements(state)
        class_dict = parts[0] if parts else state
        if not isinstance(cls, ast.Name) or not isinstance(class_dict, ast.Dict):
            return
        for key, value in zip(class_dict.keys, class_dict.values, strict=True):
            if not (isinstance(key, ast.Constant) and isinstance(value, ast.Name)):
                continue
            held = self.value_of(value.id)
            if held.kind == "function":
                self.methods.setdefault(cls.id, set()).add(str(key.value))
            elif held.kind == "instance":  # a property, a descriptor: code that attribute access may run
                self.descriptors.setdefault(cls.id, set()).add(str(key.value))

    def class_methods(self, cls: str) -> set[str]:
        """The methods a by-value class carries, its by-value bases' included."""
        found: set[str] = set()
        pending, seen = [cls], set()
        while pending:
            current = pending.pop()
            if current not in seen:
                seen.add(current)
                found |= self.methods.get(current, set())
                pending += self.bases.get(current, [])
        return found


def _python3_name(module: str, name: str) -> tuple[str, str]:
    """The global the unpickler imports: it maps Python 2 names (`copy_reg`, `__builtin__`) as pickle.load does."""
    if (module, name) in _compat_pickle.NAME_MAPPING:
        return _compat_pickle.NAME_MAPPING[(module, name)]
    return _compat_pickle.IMPORT_MAPPING.get(module, module), name


def constant(expr: ast.expr | None) -> object:
    return expr.value if isinstance(expr, ast.Constant) else None


def elements(expr: ast.expr | None) -> list[ast.expr]:
    return list(expr.elts) if isinstance(expr, ast.Tuple | ast.List) else []


def setstate_call(statement: ast.stmt) -> tuple[str, ast.expr] | None:
    """(variable, state) for BUILD's `_varN.__setstate__(state)`."""
    if not isinstance(statement, ast.Expr) or not isinstance(statement.value, ast.Call):
        return None
    func = statement.value.func
    args = statement.value.args
    if isinstance(func, ast.Attribute) and func.attr == "__setstate__" and isinstance(func.value, ast.Name) and args:
        return func.value.id, args[0]
    return None


def read_program(body: list[ast.stmt]) -> Program:
    program = Program()
    for statement in body:
        program.read(statement)
    return program
