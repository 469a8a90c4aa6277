"""Frozen value objects for the background hand-off's path, without `dataclasses`.

`@dataclass(frozen=True)` costs the hand-off ~10 ms a run: importing `dataclasses` loads
`inspect` (with `ast`, `dis`, `tokenize`), and each decorated class compiles its generated
methods. A `Record` subclass is declared the same way (annotated fields, defaults as class
attributes) and behaves the same way for what cvsmsg uses: keyword or positional
construction, equality, hashing, a repr (without the fields in `_hidden`), no assignment,
and `replace`. Type checkers treat it as a frozen dataclass (PEP 681).
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, ClassVar, TypeVar, dataclass_transform

    R = TypeVar("R", bound="Record")
else:
    def dataclass_transform(**_kwargs):  # only type checkers read it
        return lambda cls: cls


@dataclass_transform(frozen_default=True)
class Record:
    """Subclass it like a frozen dataclass: `class Part(Record): subject: str; body: str`."""

    _fields: ClassVar[tuple[str, ...]] = ()
    _defaults: ClassVar[dict[str, Any]] = {}
    _hidden: ClassVar[tuple[str, ...]] = ()  # left out of the repr (the password)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # the class's own annotations (inspect.get_annotations would import inspect)
        own = cls.__dict__.get("__annotations__", {})  # noqa: RUF063
        fields = tuple(name for name, kind in own.items()
                       if not str(kind).startswith(("ClassVar", "typing.ClassVar")))
        cls._fields = fields
        # kept apart and set on each instance: a function read from the class would bind
        cls._defaults = {name: getattr(cls, name) for name in fields if hasattr(cls, name)}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        name = type(self).__name__
        if len(args) > len(self._fields):
            raise TypeError(f"{name}() takes {len(self._fields)} arguments, "
                            f"{len(args)} were given")
        values = dict(zip(self._fields, args, strict=False))
        for key, value in kwargs.items():
            if key not in self._fields or key in values:
                raise TypeError(f"{name}() got an unexpected or repeated argument {key!r}")
            values[key] = value
        for key in self._fields:
            if key in values:
                object.__setattr__(self, key, values[key])
            elif key in self._defaults:
                object.__setattr__(self, key, self._defaults[key])
            else:
                raise TypeError(f"{name}() missing argument {key!r}")

    def _values(self) -> tuple[Any, ...]:
        return tuple(getattr(self, name) for name in self._fields)

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return self._values() == other._values()  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash(self._values())

    def __repr__(self) -> str:
        shown = ", ".join(f"{name}={getattr(self, name)!r}" for name in self._fields
                          if name not in self._hidden)
        return f"{type(self).__name__}({shown})"

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"cannot assign to field {name!r} of a frozen {type(self).__name__}")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"cannot delete field {name!r} of a frozen {type(self).__name__}")


def replace(record: R, /, **changes: Any) -> R:
    """A copy of `record` with `changes` (as `dataclasses.replace`)."""
    values = {name: getattr(record, name) for name in record._fields}
    values.update(changes)
    return type(record)(**values)
