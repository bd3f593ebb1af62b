"""What identifies a run for resume (docs/solvers.md, "The epoch loop"): a JSON description of the
settings, and the first field where two descriptions differ.

Optax transforms and schedules are closures, so a transform is described by what it closes over:
a function by its qualified name, its closure cells and its defaults; a ``functools.partial`` by
its function and arguments; a dataclass or plain object by its class and fields; an array by its
shape, dtype and a SHA-256 digest of its bytes (a pattern set, a mask); a number, string or None
by its value. Two transforms built by the same code with the same arguments (learning rates,
schedules, ρ, γ, specs) therefore have the same description, and any differing argument shows
as a differing field. Nothing in a description depends on memory addresses or the process.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import types

import jax
import numpy as np

_DEPTH = 24  # deeper nesting than any optax chain seen; beyond it only the type is named


def describe(value, _depth: int = 0, _active: frozenset = frozenset()):
    """A JSON-ready description of ``value``; equal settings give equal descriptions."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (np.generic,)):
        return value.item()
    if id(value) in _active or _depth > _DEPTH:
        return f"<{_type_name(value)}>"
    active = _active | {id(value)}

    def sub(v):
        return describe(v, _depth + 1, active)

    if hasattr(value, "shape") and hasattr(value, "dtype") and not isinstance(value, type):
        return _array(value)
    if isinstance(value, functools.partial):
        return {"partial": sub(value.func), "args": sub(value.args), "keywords": sub(value.keywords)}
    if isinstance(value, (types.FunctionType, types.MethodType)):
        return _function(value, sub)
    if callable(value) and "<locals>" not in getattr(value, "__qualname__", "<locals>"):
        return f"{getattr(value, '__module__', None)}.{value.__qualname__}"  # a named builtin, ufunc, jit
    if isinstance(value, dict):
        return {str(k): sub(v) for k, v in value.items()}
    if isinstance(value, tuple) and hasattr(value, "_fields"):  # NamedTuple (optax transforms)
        return {"type": _type_name(value), **{f: sub(getattr(value, f)) for f in value._fields}}
    if isinstance(value, (list, tuple)):
        return [sub(v) for v in value]
    if isinstance(value, (set, frozenset)):
        return sorted((sub(v) for v in value), key=lambda d: json.dumps(d, sort_keys=True, default=str))
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = {f.name: sub(getattr(value, f.name)) for f in dataclasses.fields(value)}
        return {"type": _type_name(value), **fields}
    if isinstance(value, type):
        return f"<class {_type_name(value, of_type=True)}>"
    if hasattr(value, "__dict__"):
        fields = {k: sub(v) for k, v in sorted(vars(value).items()) if not k.startswith("__")}
        return {"type": _type_name(value), **fields}
    return f"<{_type_name(value)}>"


def _type_name(value, of_type: bool = False) -> str:
    kind = value if of_type else type(value)
    return f"{kind.__module__}.{kind.__qualname__}"


def _array(value) -> dict:
    if jax.dtypes.issubdtype(value.dtype, jax.dtypes.prng_key):  # typed keys: their raw data
        value = jax.random.key_data(value)
    array = np.ascontiguousarray(np.asarray(value))
    digest = hashlib.sha256(array.tobytes()).hexdigest()[:16]
    return {"array": list(array.shape), "dtype": array.dtype.name, "sha256": digest}


def _function(fn, sub) -> dict:
    if isinstance(fn, types.MethodType):
        return {"method": fn.__func__.__qualname__, "of": sub(fn.__self__)}
    cells = fn.__closure__ or ()
    names = fn.__code__.co_freevars
    closure = {}
    for name, cell in zip(names, cells):
        try:
            closure[name] = sub(cell.cell_contents)
        except ValueError:  # an empty cell (a name bound later)
            closure[name] = "<unbound>"
    described = {"function": f"{fn.__module__}.{fn.__qualname__}"}
    if closure:
        described["closure"] = closure
    if fn.__defaults__:
        described["defaults"] = sub(fn.__defaults__)
    if fn.__kwdefaults__:
        described["kwdefaults"] = sub(fn.__kwdefaults__)
    return described


def first_difference(old, new, path: str = "") -> str | None:
    """The path of the first field where two descriptions differ, with both values, or None."""
    if isinstance(old, dict) and isinstance(new, dict):
        for key in list(old) + [k for k in new if k not in old]:
            if key not in old or key not in new:
                where = f"{path}.{key}" if path else key
                return f"{where} (only in {'this run' if key not in old else 'the checkpoint'})"
            found = first_difference(old[key], new[key], f"{path}.{key}" if path else key)
            if found:
                return found
        return None
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        for i, (a, b) in enumerate(zip(old, new)):
            found = first_difference(a, b, f"{path}[{i}]")
            if found:
                return found
        return None
    if old != new:
        return f"{path or 'the fingerprint'}: the checkpoint has {_short(old)}, this run {_short(new)}"
    return None


def _short(value) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 120 else text[:117] + "..."
