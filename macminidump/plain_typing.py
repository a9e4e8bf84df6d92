"""The two typing constructs the package's classes use at run time, without importing typing.

``import typing`` costs a dump ~4 ms (its module is the largest a dump would load), and
the dump path needs only class-syntax ``NamedTuple`` and a ``Protocol`` that
``isinstance`` can check. As ``records`` does for attrs, the names come from typing when
type checking, so mypy sees typing's own; at run time:

- ``NamedTuple``: ``class P(NamedTuple): x: int; y: int = 0`` makes the class
  ``collections.namedtuple`` makes (fields from the annotations in order, defaults from
  the values), with the class body's methods, properties and docstring on it. No
  generics, no inheritance from another NamedTuple.
- ``Protocol`` and ``runtime_checkable``: ``isinstance(obj, P)`` is true when ``obj``
  has every public attribute ``P`` declares (methods, properties and annotated names),
  as ``typing.runtime_checkable`` checks it. A class deriving from a Protocol to
  implement it is an ordinary class.

tests/test_plain_typing.py checks both against typing's.
"""

from __future__ import annotations

import collections

TYPE_CHECKING = False  # (not typing's, for the reason above)

if TYPE_CHECKING:
    from typing import NamedTuple, Protocol, runtime_checkable
else:
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
            cls = collections.namedtuple(
                name, fields, defaults=defaults or None, module=namespace["__module__"]
            )
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
