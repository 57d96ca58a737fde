"""Reading one pickle stream: decompressing joblib's compressed files, then feeding its opcodes to fickling's
interpreter, stepping over the array data joblib writes inline."""

from __future__ import annotations

import ast
import bz2
import contextlib
import io
import lzma
import pickletools
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from fickling.exception import ResourceExhaustionError
from fickling.fickle import OPCODES_BY_NAME, Interpreter, InterpreterLimits, Opcode

from mlflow_validator.stages.static.pickles.arrays import array_bytes, array_wrapper_state, dtype_has_object, is_none
from mlflow_validator.stages.static.pickles.program import Program

# Decompression (joblib's compress=...) -----------------------------------------------------------------------


class _Decompressor(Protocol):
    def decompress(self, data: bytes, max_length: int = ..., /) -> bytes: ...


class NotRead(Exception):
    """A file the validator does not read (not a fault of the model)."""


def _decompressor(data: bytes) -> tuple[str, Callable[[], _Decompressor]] | None:
    if data[:1] == b"\x78" or data[:2] == b"\x1f\x8b":
        return "zlib", lambda: zlib.decompressobj(wbits=zlib.MAX_WBITS | 32)  # 32: zlib or gzip header
    if data[:3] == b"BZh":
        return "bz2", bz2.BZ2Decompressor
    if data[:5] == b"\xfd7zXZ":
        return "xz", lzma.LZMADecompressor
    if data[:2] == b"\x5d\x00":
        return "lzma", lambda: lzma.LZMADecompressor(format=lzma.FORMAT_ALONE)
    return None


def is_compressed(head: bytes) -> bool:
    return head[:4] == LZ4_MAGIC or _decompressor(head) is not None


LZ4_MAGIC = b"\x04\x22\x4d\x18"


def decompressed(data: bytes, limit: int) -> bytes:
    """The pickle inside a compressed joblib file, of at most `limit` bytes; `data` itself when it is not compressed."""
    if data[:4] == LZ4_MAGIC:
        raise NotRead("not read: lz4-compressed (joblib compress='lz4'), which the validator does not decompress")
    found = _decompressor(data)
    if found is None:
        return data
    name, make = found
    try:
        out = make().decompress(data, limit + 1)
    except (zlib.error, OSError, lzma.LZMAError, EOFError) as exc:
        raise ValueError(f"{name}-compressed but does not decompress: {exc}") from exc
    if len(out) > limit:
        raise NotRead(f"not read: decompresses to more than {limit} bytes")
    return out


# Decompiling: fickling's interpreter, fed opcode by opcode so joblib's inline array data can be stepped over ----


def _opcode(info: pickletools.OpcodeInfo, arg: Any, pos: int | None) -> Any:
    """fickling's opcode; the few fickling lacks are replaced by ones that leave the same kind of value."""
    if info.name == "FLOAT":
        return OPCODES_BY_NAME["BINFLOAT"](argument=arg, position=pos)
    if info.name == "BYTEARRAY8":
        return OPCODES_BY_NAME["BINBYTES8"](argument=arg, position=pos)
    if info.name == "NEXT_BUFFER":
        return OPCODES_BY_NAME["NONE"](position=pos)
    if info.name == "READONLY_BUFFER":
        return None
    return Opcode(info=info, argument=arg, position=pos)


class _Feed:
    """One pickle stream read into fickling's interpreter lazily, so that it can step over joblib's array data.

    joblib writes each numpy array's raw bytes right after the NumpyArrayWrapper object in the stream, and its
    unpickler reads them when BUILD makes such a wrapper; pickletools would take them for opcodes.
    """

    def __init__(self, stream: io.BytesIO, *, joblib: bool, limits: InterpreterLimits, first_variable: int = 0) -> None:
        self.stream = stream
        self.joblib = joblib
        self.limits = limits
        self.interpreter = Interpreter(self, first_variable_id=first_variable, limits=limits)
        self.program = Program()  # the statements so far, to recognise the wrapper BUILD just made
        self.nested: list[ast.stmt] = []  # object arrays are pickles of their own
        self.arrays = 0
        self.complete = False  # read to its STOP
        self.stopped = ""  # why not
        self.exhausted = ""  # fickling's resource limits stopped the interpretation

    def __iter__(self) -> Iterator[Any]:
        try:
            for info, arg, pos in pickletools.genops(self.stream):
                opcode = _opcode(info, arg, pos)
                # fickling stops asking for opcodes once it has run STOP
                self.complete = info.name == "STOP"
                if opcode is not None:
                    yield opcode
                if info.name == "BUILD" and self.joblib and not self._step_over_array():
                    return
        except ValueError as exc:  # genops: an unknown opcode or a truncated argument
            self.stopped = str(exc)

    def statements(self) -> list[ast.stmt]:
        return list(self.interpreter.module_body)

    def _step_over_array(self) -> bool:
        """After a BUILD: if it made joblib's array wrapper, move past the array data; False if that cannot be done."""
        body = self.interpreter.module_body
        for statement in body[self.program.count :]:
            self.program.read(statement)
        wrapper = array_wrapper_state(self.program, body[-1])
        if wrapper is None:
            return True
        self.arrays += 1
        if dtype_has_object(self.program, wrapper["dtype"]):
            return self._read_object_array()
        size = array_bytes(self.program, wrapper)
        if size is None:
            self.stopped = "array data not read: joblib's array wrapper could not be sized"
            return False
        alignment = wrapper.get("numpy_array_alignment_bytes")
        if alignment is not None and not is_none(alignment):
            padding = self.stream.read(1)  # joblib writes the padding's length, then the padding
            size += padding[0] if padding else 0
        self.stream.seek(self.stream.tell() + size)
        return True

    def _read_object_array(self) -> bool:
        nested = _Feed(self.stream, joblib=False, limits=self.limits, first_variable=1_000_000 * self.arrays)
        failure = nested.run()
        self.nested += nested.statements() + nested.nested
        if failure or not nested.complete:
            self.stopped = f"array data not read: an object array's pickle is unreadable ({failure or nested.stopped})"
            return False
        return True

    def run(self) -> str:
        """Interpret the stream; why interpretation failed, or ''."""
        # fickling reports malformed input on stdout and stderr; the findings say it instead.
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            try:
                self.interpreter.run()
            except ResourceExhaustionError as exc:
                self.exhausted = str(exc)
                return f"fickling's limit reached ({exc})"
            except Exception as exc:  # hostile input can make fickling raise anything: the file is unreadable
                return f"{type(exc).__name__}: {exc}"
        return ""


@dataclass(frozen=True)
class Decompiled:
    body: list[ast.stmt]
    arrays: int = 0
    note: str = ""
    error: str = ""


def decompile(data: bytes, *, joblib: bool, limits: InterpreterLimits) -> Decompiled:
    stream = io.BytesIO(data)
    feed = _Feed(stream, joblib=joblib, limits=limits)
    failure = feed.run()
    body = feed.statements() + feed.nested
    if feed.exhausted:
        return Decompiled(body, feed.arrays, note=f"only the beginning was read: {failure}")
    if not body and (failure or not feed.complete):
        return Decompiled([], error=f"not a pickle: {failure or feed.stopped}")
    if failure:
        return Decompiled(body, feed.arrays, error=f"decompiling stopped ({failure}); only the part before was read")
    if feed.stopped.startswith("array data not read"):
        return Decompiled(body, feed.arrays, note=f"{feed.stopped}; the rest of the stream was not read")
    if not feed.complete:
        return Decompiled(body, feed.arrays, error=f"the pickle is truncated or corrupt: {feed.stopped}")
    trailing = len(data) - stream.tell()
    return Decompiled(body, feed.arrays, note=f"{trailing} bytes after the pickle's end not read" if trailing else "")
