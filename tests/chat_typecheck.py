"""A strict structural check of plain JSON values against the SDKs' TypedDict param types.

pydantic's TypeAdapter validates `Iterable[...]` fields lazily and ignores unknown keys, which would
let a wrong translation pass; this walks the value eagerly and rejects keys the type does not declare.
"""

from __future__ import annotations

import collections.abc
import types
import typing
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

import pydantic
from typing_extensions import is_typeddict

_HINTS: dict[Any, dict[str, Any]] = {}
_SEQUENCES = (
    list,
    collections.abc.Iterable,
    collections.abc.Sequence,
    typing.Iterable,
    typing.Sequence,
    typing.List,  # noqa: UP006  # the bare alias object itself, which is not `list`
)


def check(value: Any, tp: Any, path: str = "$") -> None:
    """Raise AssertionError naming the first place where `value` does not fit `tp`."""
    error = _mismatch(value, tp, path)
    assert error is None, error


def _hints(td: Any) -> dict[str, Any]:
    if td not in _HINTS:
        _HINTS[td] = get_type_hints(td)
    return _HINTS[td]


def _mismatch(value: Any, tp: Any, path: str) -> str | None:
    if tp is Any or tp is object:
        return None
    if tp is None or tp is type(None):
        return None if value is None else f"{path}: expected null, got {value!r:.80}"
    origin = get_origin(tp)
    if origin is typing.Annotated:
        return _mismatch(value, get_args(tp)[0], path)
    if origin in (Union, types.UnionType):
        errors = [_mismatch(value, arg, path) for arg in get_args(tp)]
        if all(errors):
            return min(errors, key=lambda e: -len(e.split(":")[0]))  # the deepest explanation
        return None
    if origin is Literal:
        return None if value in get_args(tp) else f"{path}: {value!r:.80} not in {get_args(tp)}"
    if is_typeddict(tp):
        return _typeddict(value, tp, path)
    if origin in (dict, collections.abc.Mapping) or tp is dict:
        if not isinstance(value, dict):
            return f"{path}: expected object, got {type(value).__name__}"
        args = get_args(tp)
        if args:
            for k, v in value.items():
                error = _mismatch(v, args[1], f"{path}.{k}")
                if error:
                    return error
        return None
    if (
        origin in _SEQUENCES
        or getattr(tp, "__name__", "") == "SequenceNotStr"
        or getattr(origin, "__name__", "") == "SequenceNotStr"
    ):
        if not isinstance(value, list):
            return f"{path}: expected list, got {type(value).__name__}"
        (item,) = get_args(tp) or (Any,)
        for i, v in enumerate(value):
            error = _mismatch(v, item, f"{path}[{i}]")
            if error:
                return error
        return None
    if isinstance(tp, type) and issubclass(tp, pydantic.BaseModel):
        return f"{path}: only plain JSON is checked; {tp.__name__} is an SDK response model"
    if tp is bool:
        return None if isinstance(value, bool) else f"{path}: expected bool, got {value!r:.80}"
    if tp is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
        return None if ok else f"{path}: expected int, got {value!r:.80}"
    if tp is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        return None if ok else f"{path}: expected number, got {value!r:.80}"
    if tp is str:
        return None if isinstance(value, str) else f"{path}: expected string, got {value!r:.80}"
    return f"{path}: {tp!r} is not a JSON type"  # e.g. IO[bytes] in a union with str


def _typeddict(value: Any, td: Any, path: str) -> str | None:
    if not isinstance(value, dict):
        return f"{path}: expected {td.__name__} object, got {type(value).__name__}"
    hints = _hints(td)
    missing = [k for k in td.__required_keys__ if k not in value]
    if missing:
        return f"{path}: {td.__name__} missing {missing}"
    extra = [k for k in value if k not in hints]
    if extra:
        return f"{path}: {td.__name__} does not take {extra}"
    for key, v in value.items():
        error = _mismatch(v, hints[key], f"{path}.{key}")
        if error:
            return error
    return None
