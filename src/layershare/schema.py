"""Type checks of config values against dataclass annotations: a bool is a bool.

Configs arrive from YAML, ``--set`` and JSON, where ``"no"``, ``1`` and ``"4"`` look like
values of the right type to a careless reader but not to this checker::

    check_fields(config, where="share")   # in a dataclass's __post_init__

Annotations are the strings ``from __future__ import annotations`` leaves (``"int"``,
``"bool | None"``, ``"str | list[int]"``, ``"dict[str, str | list[str]] | None"``, ``"Any"``).
A ``float`` field takes an int or a numeric string (YAML 1.1 reads ``3e-4`` as a string) and
returns the float; nothing else is converted.
"""

from __future__ import annotations

from dataclasses import fields

from .errors import LayershareError

_WORDS = {"int": "an integer", "float": "a number", "str": "a string", "bool": "true or false",
          "None": "null", "list": "a list", "dict": "a mapping"}


def _split(text: str, sep: str) -> list[str]:
    """Split at ``sep`` outside brackets."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        depth += ch == "["
        depth -= ch == "]"
        if ch == sep and depth == 0:
            parts.append(text[start:i].strip())
            start = i + 1
    parts.append(text[start:].strip())
    return parts


def _match(alt: str, value):
    """(ok, value) for one alternative of an annotation."""
    base, _, args = alt.partition("[")
    base, args = base.strip(), args[:-1] if args else ""
    if base in ("Any", "object"):
        return True, value
    if base == "None":
        return value is None, value
    if base == "bool":
        return isinstance(value, bool), value
    if base == "int":
        return isinstance(value, int) and not isinstance(value, bool), value
    if base == "float":
        if isinstance(value, bool):
            return False, value
        if isinstance(value, (int, float)):
            return True, float(value)
        if isinstance(value, str):
            try:
                return True, float(value)
            except ValueError:
                return False, value
        return False, value
    if base == "str":
        return isinstance(value, str), value
    if base in ("list", "tuple"):
        if not isinstance(value, (list, tuple)):
            return False, value
        if args:
            checked = [_matches(args, v) for v in value]
            if not all(ok for ok, _ in checked):
                return False, value
            return True, [v for _, v in checked]
        return True, value
    if base == "dict":
        if not isinstance(value, dict):
            return False, value
        if args:
            key_t, val_t = _split(args, ",")
            if not all(_matches(key_t, k)[0] and _matches(val_t, v)[0] for k, v in value.items()):
                return False, value
        return True, value
    raise TypeError(f"unsupported annotation {alt!r}")  # a bug in a dataclass


def _matches(annotation: str, value):
    for alt in _split(annotation, "|"):
        ok, converted = _match(alt, value)
        if ok:
            return True, converted
    return False, value


def words(annotation: str) -> str:
    return " or ".join(_WORDS.get(a.partition("[")[0].strip(), a) for a in _split(annotation, "|"))


def check_value(annotation, value, name: str):
    """``value`` (a float field's int as a float) if it fits ``annotation``, else a one-line
    :class:`LayershareError` naming the key."""
    if not isinstance(annotation, str):
        annotation = getattr(annotation, "__name__", str(annotation))
    ok, converted = _matches(annotation, value)
    if not ok:
        raise LayershareError(f"{name} must be {words(annotation)}, got {value!r:.80}")
    return converted


def check_fields(obj, where: str = "") -> None:
    """Check (and normalise floats of) every field of the dataclass instance ``obj``."""
    for f in fields(obj):
        name = f"{where}.{f.name}" if where else f.name
        object.__setattr__(obj, f.name, check_value(f.type, getattr(obj, f.name), name))
