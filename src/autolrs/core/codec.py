"""One codec for every saved state: dataclasses to JSON-safe dicts and back.

:func:`to_dict` writes a dataclass's fields in their declared order, under their names;
:func:`from_dict` reads them back, converting each value by the field's type hint. Nested
dataclasses, lists, tuples, ``dict``, ``X | None`` and plain values (``int``, ``float``, ``bool``,
``str``) are handled; floats are written as they are, NaN and infinities included (the
controller's state has always held them as floats). A nested value whose class defines its own
``to_dict``/``from_dict`` (e.g. ``SearchSpace``) is written and read by them.

Field metadata (:func:`since`, :func:`key`, :func:`inline`) says what differs from that rule:

* ``since(old)``: states written before the field existed lack it; they read ``old``.
  Any other missing key is an error (``KeyError``), so a malformed state is not read silently.
* ``key(name)``: the field is saved under another name.
* ``inline()``: a nested dataclass's fields are written into the parent's dict, not under a key.

Adding a field to a saved state is then one line, plus ``since(...)`` where old states lack it.
A class that is not itself a dataclass (a phase) may describe its saved attributes with one,
a *schema*: ``to_dict(obj, schema)`` reads them from ``obj``, :func:`fields_from` returns them.
"""

from __future__ import annotations

import copy
import dataclasses
import types
import typing
from functools import lru_cache
from typing import Any, Union

__all__ = ["fields_from", "from_dict", "inline", "key", "since", "to_dict"]

_SINCE, _KEY, _INLINE = "codec_since", "codec_key", "codec_inline"


def since(old: Any, **kwargs: Any) -> Any:
    """A field that old states lack: they read ``old`` (a copy of it); ``kwargs`` go to
    :func:`dataclasses.field` (e.g. the field's own ``default``)."""
    return _field(kwargs, {_SINCE: old})


def key(name: str, **kwargs: Any) -> Any:
    """A field saved under ``name``; ``kwargs`` go to :func:`dataclasses.field`."""
    return _field(kwargs, {_KEY: name})


def inline(**kwargs: Any) -> Any:
    """A nested dataclass whose fields are saved in the parent's dict."""
    return _field(kwargs, {_INLINE: True})


def _field(kwargs: dict[str, Any], meta: dict[str, Any]) -> Any:
    meta = {**kwargs.pop("metadata", {}), **meta}
    return dataclasses.field(metadata=meta, **kwargs)


def to_dict(obj: Any, schema: type | None = None) -> dict[str, Any]:
    """The JSON-safe dict of a dataclass instance (or of ``obj``'s attributes that ``schema``,
    a dataclass, names).

    Raises:
        TypeError: If neither ``obj`` nor ``schema`` is a dataclass.
    """
    out: dict[str, Any] = {}
    for f in dataclasses.fields(schema or obj):
        value = getattr(obj, f.name)
        if f.metadata.get(_INLINE):
            out.update(to_dict(value))
        else:
            out[f.metadata.get(_KEY, f.name)] = _encode(value)
    return out


def _encode(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if hasattr(value, "to_dict"):
        return value.to_dict()
    if dataclasses.is_dataclass(value):
        return to_dict(value)
    if isinstance(value, (list, tuple)):
        return [_encode(v) for v in value]
    if isinstance(value, dict):
        return {k: _encode(v) for k, v in value.items()}
    raise TypeError(f"cannot save a {type(value).__name__}")


def from_dict(cls: type, data: dict[str, Any]) -> Any:
    """The ``cls`` instance :func:`to_dict` wrote ``data`` from.

    Raises:
        KeyError: If a field's key is missing and the field has no :func:`since` default.
        TypeError, ValueError: If a value does not convert to its field's type.
    """
    return cls(**fields_from(cls, data))


def fields_from(schema: type, data: dict[str, Any], *, partial: bool = False) -> dict[str, Any]:
    """The values of ``schema``'s fields read from ``data``, by field name (constructor
    arguments); ``partial``: a missing key is left out (the constructor's default stands)."""
    hints = _hints(schema)
    out: dict[str, Any] = {}
    for f in dataclasses.fields(schema):
        if not f.init:
            continue
        if f.metadata.get(_INLINE):
            out[f.name] = from_dict(hints[f.name], data)
            continue
        name = f.metadata.get(_KEY, f.name)
        if name in data:
            out[f.name] = _decode(hints[f.name], data[name])
        elif _SINCE in f.metadata:
            out[f.name] = copy.deepcopy(f.metadata[_SINCE])
        elif not partial:
            raise KeyError(name)
    return out


@lru_cache(maxsize=None)
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _decode(hint: Any, value: Any) -> Any:
    origin = typing.get_origin(hint)
    if origin in (Union, types.UnionType):
        if value is None:
            return None
        (inner,) = [a for a in typing.get_args(hint) if a is not type(None)]
        return _decode(inner, value)
    if origin in (list, tuple):
        args = typing.get_args(hint)
        inner = args[0] if args else Any
        items = [_decode(inner, v) for v in value]
        return items if origin is list else tuple(items)
    if hint is Any or origin is dict or hint is dict:
        return value
    if hasattr(hint, "from_dict"):
        return hint.from_dict(value)
    if dataclasses.is_dataclass(hint):
        return from_dict(hint, value)
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return value  # an int is a float's value (PEP 484): kept, so a state reads back as saved
    if hint in (int, float, bool, str):
        return hint(value)
    raise TypeError(f"cannot read a {hint!r}")
