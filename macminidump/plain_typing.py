"""The typing constructs the package's classes use at run time, without importing typing
or the collections package.

``import typing`` costs a dump ~4 ms (its module is the largest a dump would load), and
``collections`` ~3 ms more; the dump path needs only class-syntax ``NamedTuple``, a
``Protocol`` that ``isinstance`` can check, and the abstract classes of
``collections.abc``. As ``records`` does for attrs, the names come from typing and
collections.abc when type checking, so mypy sees their own; at run time:

- ``NamedTuple``: ``class P(NamedTuple): x: int; y: int = 0`` makes the class
  ``collections.namedtuple`` makes (fields from the annotations in order, defaults from
  the values; ``_fields``, ``_field_defaults``, ``_make``, ``_replace``, ``_asdict``, its
  repr, pickling), with the class body's methods, properties and docstring on it. No
  generics, no inheritance from another NamedTuple.
- ``Protocol`` and ``runtime_checkable``: ``isinstance(obj, P)`` is true when ``obj``
  has every public attribute ``P`` declares (methods, properties and annotated names),
  as ``typing.runtime_checkable`` checks it. A class deriving from a Protocol to
  implement it is an ordinary class.
- ``Callable``, ``Iterable``, ``Iterator``, ``Mapping``, ``Sequence``: collections.abc's
  own classes, taken from ``_collections_abc``, the module collections.abc re-exports,
  which the interpreter has loaded at start-up (importing ``collections.abc`` loads the
  ``collections`` package first). The modules a dump loads import them from here.

tests/test_plain_typing.py checks each against the real one.
"""

from __future__ import annotations

TYPE_CHECKING = False  # (not typing's, for the reason above)

if TYPE_CHECKING:
    from collections.abc import Callable as Callable
    from collections.abc import Iterable as Iterable
    from collections.abc import Iterator as Iterator
    from collections.abc import Mapping as Mapping
    from collections.abc import Sequence as Sequence
    from typing import NamedTuple, Protocol, runtime_checkable
else:
    from _collections_abc import Callable as Callable
    from _collections_abc import Iterable as Iterable
    from _collections_abc import Iterator as Iterator
    from _collections_abc import Mapping as Mapping
    from _collections_abc import Sequence as Sequence

    try:
        # the C accessor collections.namedtuple gives its fields
        from _collections import _tuplegetter
    except ImportError:  # (an interpreter without it)

        def _tuplegetter(index, doc):
            return property(lambda self: self[index], doc=doc)

    def _named_tuple(name, fields, defaults, module):
        """The class ``collections.namedtuple(name, fields, defaults=defaults)`` makes."""
        count = len(fields)
        listed = ", ".join(fields)
        # (__new__ compiled from text, as namedtuple does: a Python call per field else)
        new = eval(
            f"lambda _cls, {listed}: _tuple_new(_cls, ({listed}{',' if count else ''}))",
            {"_tuple_new": tuple.__new__, "__builtins__": {}},
        )
        new.__defaults__ = tuple(defaults) or None
        new.__name__, new.__qualname__ = "__new__", f"{name}.__new__"

        def _make(cls, iterable):
            made = tuple.__new__(cls, iterable)
            if len(made) != count:
                raise TypeError(f"Expected {count} arguments, got {len(made)}")
            return made

        def _replace(self, /, **changes):
            made = self._make(map(changes.pop, fields, self))
            if changes:
                raise ValueError(f"Got unexpected field names: {list(changes)!r}")
            return made

        def __repr__(self):
            shown = ", ".join(f"{f}={v!r}" for f, v in zip(fields, self))
            return f"{self.__class__.__name__}({shown})"

        def _asdict(self):
            return dict(zip(fields, self))

        def __getnewargs__(self):
            return tuple(self)

        namespace = {
            "__doc__": f"{name}({listed})",
            "__slots__": (),
            "_fields": tuple(fields),
            "_field_defaults": dict(zip(fields[count - len(defaults) :], defaults)),
            "__new__": new,
            "_make": classmethod(_make),
            "_replace": _replace,
            "__repr__": __repr__,
            "_asdict": _asdict,
            "__getnewargs__": __getnewargs__,
            "__match_args__": tuple(fields),
            "__module__": module,
        }
        for index, field in enumerate(fields):
            namespace[field] = _tuplegetter(index, f"Alias for field number {index}")
        return type(name, (tuple,), namespace)

    #: names a class body always has, which are not fields or members
    _CLASS_KEYS = frozenset(
        {"__module__", "__qualname__", "__annotations__", "__doc__", "__orig_bases__"}
    )

    class _NamedTupleMeta(type):
        def __new__(mcls, name, bases, namespace):
            if bases == ():
                return super().__new__(mcls, name, bases, namespace)  # NamedTuple itself
            if bases != (NamedTuple,):
                raise TypeError(f"{name}: a NamedTuple derives from NamedTuple alone")
            fields = list(namespace.get("__annotations__", {}))
            defaults = [namespace[f] for f in fields if f in namespace]
            if defaults and any(f not in namespace for f in fields[len(fields) - len(defaults) :]):
                raise TypeError(f"{name}: a field without a default follows one with a default")
            cls = _named_tuple(name, fields, defaults, namespace["__module__"])
            cls.__qualname__ = namespace["__qualname__"]
            if "__doc__" in namespace:
                cls.__doc__ = namespace["__doc__"]
            for key, value in namespace.items():
                if key not in _CLASS_KEYS and key not in fields:
                    setattr(cls, key, value)
            return cls

    class NamedTuple(metaclass=_NamedTupleMeta):
        """Base of a class-syntax named tuple (see the module's docstring)."""

    class _ProtocolMeta(type):
        def __instancecheck__(cls, instance):
            members = cls.__dict__.get("_protocol_members")
            if members is None:
                return super().__instancecheck__(instance)
            return all(hasattr(instance, name) for name in members)

    class Protocol(metaclass=_ProtocolMeta):
        """Base of a structural interface (see the module's docstring)."""

        def __init_subclass__(cls, **kwargs):
            super().__init_subclass__(**kwargs)
            if Protocol not in cls.__bases__:
                return  # a class that implements a protocol: checked as any other class
            names = set(cls.__dict__.get("__annotations__", {}))
            names.update(k for k in cls.__dict__ if k not in _CLASS_KEYS)
            for base in cls.__mro__[1:]:
                names.update(base.__dict__.get("_protocol_members", ()))
            cls._protocol_members = frozenset(n for n in names if not n.startswith("_"))

    def runtime_checkable(cls):
        """Marks a Protocol as checkable by isinstance (every Protocol here is)."""
        return cls
