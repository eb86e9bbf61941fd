"""The base of every config (convert's ShareConfig, the run config's sections, DLT,
distillation): pydantic models whose mistakes read as one line.

Configs arrive from Python, YAML, ``--set`` and JSON, where ``"no"``, ``1`` and ``"4"`` look
like values of the right type to a careless reader but not to these models: a bool is a
bool and an integer an integer (:data:`Int`, :data:`Bool`, :data:`Str` are pydantic's strict
types). A number (:data:`Number`) also takes an integer or a numeric string, because YAML
1.1 reads ``3e-4`` as a string, and becomes a float.

A :class:`Section` raises :class:`~layershare.errors.LayershareError` instead of pydantic's
``ValidationError``: the first problem, in one line that names the key (dotted from the
root, e.g. ``train.lr``), the value and what is allowed (:func:`one_line`). A rule that
spans several keys of one section raises :class:`Bad` from a ``model_validator``, its
message starting with the key, so that the section's path can be put in front of it.
"""

from __future__ import annotations

import types
from typing import Annotated, Any, ClassVar, Literal, Union, get_args, get_origin

from annotated_types import Ge, Gt, Le, Lt
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    ValidationError,
    model_validator,
)

from .errors import LayershareError


def _numeric_string(value):
    """``"3e-4"`` -> 0.0003 (YAML 1.1 reads such floats as strings); anything else as is."""
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


Int = StrictInt
Bool = StrictBool
Str = StrictStr
#: a float field: a float, an int or a numeric string, never a bool
Number = Annotated[StrictFloat, BeforeValidator(_numeric_string)]


class Bad(LayershareError):
    """A cross-key rule of one section, broken; the message starts with the key (``rank
    must be ...``) so that :func:`one_line` can prefix the section (``share.rank ...``)."""


class ConfigError(LayershareError):
    """A section's whole one-line error (pydantic calls a nested section's ``__init__``,
    so an outer section meets it as a finished message)."""


class Section(BaseModel):
    """A config section: unknown keys are errors, mistakes are one-line LayershareErrors."""

    model_config = ConfigDict(extra="forbid", validate_assignment=False)
    #: the dotted path of this section in the run config, for errors of a direct construction
    where: ClassVar[str] = ""

    def __init__(self, **values):
        try:
            super().__init__(**values)
        except ValidationError as exc:
            raise ConfigError(one_line(exc, type(self), values, self.where)) from None

    @model_validator(mode="before")
    @classmethod
    def _sections_in(cls, values):
        """A nested section written as ``dlt:`` with nothing under it is empty; its keys are
        strings (pydantic passes them to the section's ``__init__`` as keywords: a YAML key
        ``1:`` must be an unknown key, not a TypeError)."""
        if not isinstance(values, dict):
            return values
        out = {}
        for key, value in values.items():
            field = cls.model_fields.get(key)
            if field is not None and section_of(field.annotation):
                value = {} if value is None else _string_keys(value)
            out[key] = value
        return out

    @classmethod
    def from_dict(cls, values):
        """The section checked from a mapping (YAML, JSON), or a one-line error."""
        try:
            return cls.model_validate(_string_keys(values))
        except ValidationError as exc:
            raise ConfigError(one_line(exc, cls, values, cls.where)) from None

    def to_dict(self) -> dict:
        return self.model_dump()

    @classmethod
    def help(cls) -> dict[str, str]:
        """``{field: help text}``."""
        return {name: f.description or "" for name, f in cls.model_fields.items()}


def _string_keys(values):
    return {str(k): v for k, v in values.items()} if isinstance(values, dict) else values


def section_of(annotation) -> type[Section] | None:
    """The Section class a field holds, if it holds one."""
    return annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) \
        else None


def _plain(annotation):
    """The annotation without ``Annotated`` wrappers and without ``None`` in a union."""
    while get_origin(annotation) is Annotated:
        annotation = get_args(annotation)[0]
    if get_origin(annotation) in (Union, types.UnionType):
        args = [a for a in get_args(annotation) if a is not type(None)]
        return _plain(args[0]) if len(args) == 1 else annotation
    return annotation


_WORDS = {int: ("an integer", "integers"), float: ("a number", "numbers"),
          str: ("a string", "strings"), bool: ("true or false", "true or false"),
          type(None): ("null", "null"), Any: ("anything", "anything")}


def words(annotation, plural: bool = False) -> str:
    """What a value of ``annotation`` may be, in words (``an integer or null``)."""
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Annotated:
        return words(args[0], plural)
    if origin in (Union, types.UnionType):
        return " or ".join(words(a, plural) for a in args)
    if origin is Literal:
        return "one of " + ", ".join(map(str, args))
    if origin in (list, tuple):
        inner = f" of {words(args[0], True)}" if args else ""
        return ("lists" if plural else "a list") + inner
    if origin is dict:
        inner = f" of {words(args[0], True)} to {words(args[1], True)}" if args else ""
        return ("mappings" if plural else "a mapping") + inner
    if annotation in (list, tuple):
        return "lists" if plural else "a list"
    if annotation is dict or section_of(annotation):
        return "mappings" if plural else "a mapping"
    pair = _WORDS.get(annotation)
    return pair[plural] if pair else str(annotation)


def bounds(field) -> str:
    """A field's range in words: ``>= 1``, ``in [0, 1)``, or ``""``."""
    low = high = None
    for m in field.metadata:
        if isinstance(m, (Ge, Gt)):
            low = ("[", m.ge) if isinstance(m, Ge) else ("(", m.gt)
        elif isinstance(m, (Le, Lt)):
            high = ("]", m.le) if isinstance(m, Le) else (")", m.lt)
    if low and high:
        return f"in {low[0]}{low[1]}, {high[1]}{high[0]}"
    if low:
        return f"{'>=' if low[0] == '[' else '>'} {low[1]}"
    if high:
        return f"{'<=' if high[0] == ']' else '<'} {high[1]}"
    return ""


_NONE = object()


def one_line(exc: ValidationError, root: type[BaseModel], data, where: str = "") -> str:
    """The first error of ``exc`` as one line naming the key, the value and what is allowed.

    ``root`` is the model that was validated, ``data`` its input (to show a field's whole
    value where pydantic points inside it), ``where`` the root's own dotted path.
    """
    err = exc.errors(include_url=False)[0]
    loc, kind = err["loc"], err["type"]
    cls, path, field, raw, at = root, [where] if where else [], None, data, 0
    while at < len(loc) and cls is not None and loc[at] in cls.model_fields:
        field = cls.model_fields[loc[at]]
        path.append(str(loc[at]))
        raw = raw.get(loc[at], _NONE) if isinstance(raw, dict) else _NONE
        cls, at = section_of(field.annotation), at + 1
    name = ".".join(path)
    whole = err["input"] if raw is _NONE else raw  # the field's value as given, not a part
    shown = f"{whole!r:.80}"
    if kind == "value_error":
        problem = err["ctx"]["error"]
        text = str(problem)
        if isinstance(problem, ConfigError):  # a nested section's, complete
            return text
        if isinstance(problem, Bad):
            return f"{name}.{text}" if name else text
        return f"{name}: {text}" if name else text
    if kind == "extra_forbidden" and cls is not None:
        key = ".".join(path + [str(loc[at])])
        scope = f" in {'.'.join(path)}" if path else ""
        return f"unknown config key {key!r}; known{scope}: {', '.join(cls.model_fields)}"
    if kind == "missing":
        return f"{'.'.join(path + [str(p) for p in loc[at:]])} is required"
    if kind in ("model_type", "dict_type") and at == len(loc):
        return f"{name or 'config'} must be a mapping, got {shown}"
    if field is None:
        return f"{name or 'config'}: {err['msg']}, got {shown}"
    kind_of = _plain(field.annotation)
    if kind == "literal_error" and get_origin(kind_of) is Literal:
        return f"unknown {name} {shown}; choose one of " \
               f"{', '.join(map(str, get_args(kind_of)))}"
    if kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal") \
            and at == len(loc):
        what = "an integer " if kind_of is int else ""
        return f"{name} must be {what}{bounds(field)}, got {shown}"
    return f"{name} must be {words(field.annotation)}, got {shown}"


def describe(cls: type[BaseModel], prefix: str = "") -> list[str]:
    """``key  default  help`` lines for every field, sections recursively
    (``layershare train --help-config``)."""
    lines = []
    for name, f in cls.model_fields.items():
        sub = section_of(f.annotation)
        if sub is not None:
            lines += describe(sub, f"{prefix}{name}.")
        else:
            default = f.get_default(call_default_factory=True)
            lines.append(f"{prefix + name:28s} {default!r:12s} {f.description or ''}")
    return lines
