"""Record classes: the part of attrs this package uses, without importing attrs.

``import attrs`` costs ~80 ms and attrs builds each class in ~1 ms (it compiles __init__,
__repr__, __eq__ and __hash__, and builds a slotted class twice); a dump imports ~30
record classes and is meant to take a fraction of gcore's time. So the package declares
its records with the same names and meaning as attrs (mypy types them through its attrs
plugin, which is why the declarations are imported from attrs when type checking), and
at run time this module builds them: an ``__init__`` per class from a text of one line a
field (the package's own texts compiled ahead, in records_generated.py; any other is
exec'd), and generic ``__eq__``, ``__hash__``, ``__repr__`` and (frozen) ``__setattr__``
over a per-class tuple of fields. tests/test_records.py checks each feature against
real attrs.

What is implemented, with attrs' semantics:

- ``frozen`` (``kw_only=``) and ``define``: fields from the class annotations, in order;
  ``__attrs_post_init__`` is called at the end of ``__init__``; ``frozen`` instances
  refuse assignment and deletion (``FrozenInstanceError``) and hash their eq-fields;
  ``define`` instances are mutable and unhashable. Both compare equal only to an
  instance of the same class. The classes are plain ``__dict__`` classes (not slotted),
  so ``functools.cached_property`` works and pickle and copy need nothing special.
- ``field(default=, factory=, converter=, eq=, hash=, repr=, init=)``; ``eq`` may be a
  key applied to both sides, ``repr`` a function of the value; converters also run on
  defaults; ``Factory(f, takes_self=True)`` sees the fields set before it.
- ``cmp_using(eq=)``, ``optional`` (attrs.converters.optional), ``evolve``,
  ``asdict`` (recurse or not; collections keep their type, as in ``attrs.asdict``), ``has``.

Not implemented (the package does not use them; a declaration needing them is refused
or simply not offered): inheritance between records, validators, ``on_setattr``
(so ``define`` refuses converters, which attrs would also run on assignment),
ordering, ``__match_args__``, slots, a guard against a record that contains itself
in its own repr.
"""

from __future__ import annotations

import _operator as operator  # (the C core: operator.py re-declares it in Python, ~0.4 ms)

TYPE_CHECKING = False  # not typing's: a dump need not import typing for this module


class FrozenInstanceError(AttributeError):
    """Assignment to, or deletion of, an attribute of a frozen record."""

    msg = "can't set attribute"
    args = ("can't set attribute",)


if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from attrs import Factory, asdict, cmp_using, define, evolve, field, frozen, has
    from attrs.converters import optional
else:
    from .records_generated import INITS as _GENERATED

    class _Nothing:
        """A field's missing default (attrs' NOTHING)."""

        __slots__ = ()

        def __repr__(self) -> str:
            return "NOTHING"

        def __reduce__(self) -> str:
            return "NOTHING"

    NOTHING = _Nothing()

    class Factory:
        """A default made per instance: ``factory()``, or ``factory(self)``."""

        __slots__ = ("factory", "takes_self")

        def __init__(self, factory: Callable[..., Any], takes_self: bool = False) -> None:
            self.factory = factory
            self.takes_self = takes_self

    class _Field:
        """One field's declaration; ``name`` is filled in when its class is built."""

        __slots__ = ("name", "default", "converter", "eq", "eq_key", "hash", "repr", "init")

        def __init__(self, default, converter, eq, hash, repr, init) -> None:
            self.name = ""
            self.default = default
            self.converter = converter
            self.eq = bool(eq)
            self.eq_key = None if isinstance(eq, bool) else eq
            self.hash = self.eq if hash is None else hash
            self.repr = repr
            self.init = init

    def field(
        *,
        default: Any = NOTHING,
        factory: Callable[[], Any] | None = None,
        converter: Callable[[Any], Any] | None = None,
        eq: bool | Callable[[Any], Any] = True,
        hash: bool | None = None,
        repr: bool | Callable[[Any], str] = True,
        init: bool = True,
    ) -> Any:
        """A field with options; a bare annotation (with or without a value) is a field too."""
        if factory is not None:
            if default is not NOTHING:
                raise ValueError("The `default` and `factory` arguments are mutually exclusive.")
            default = Factory(factory)
        return _Field(default, converter, eq, hash, repr, init)

    def optional(converter: Callable[[Any], Any]) -> Callable[[Any], Any]:
        """A converter that lets None through (attrs.converters.optional)."""

        def optional_converter(value: Any) -> Any:
            return None if value is None else converter(value)

        return optional_converter

    def cmp_using(eq: Callable[[Any, Any], bool]) -> type:
        """An eq key that compares two values with ``eq(a, b)`` (values it wraps are unhashable,
        so such a field should say ``hash=False``)."""

        class Comparable:
            __slots__ = ("value",)

            def __init__(self, value: Any) -> None:
                self.value = value

            def __eq__(self, other: object) -> bool:
                if other.__class__ is not self.__class__:
                    return NotImplemented
                return eq(self.value, other.value)

        return Comparable

    def _frozen_setattr(self: Any, name: str, value: Any) -> None:
        raise FrozenInstanceError()

    def _frozen_delattr(self: Any, name: str) -> None:
        raise FrozenInstanceError()

    def _values_of(spec: tuple[tuple[str, Any], ...]) -> Callable[[Any], tuple[Any, ...]]:
        """self -> the tuple of its (name, key) fields' values, each through its key if any."""
        names = tuple(name for name, _ in spec)
        if any(key is not None for _, key in spec):
            getters = tuple(
                operator.attrgetter(name) if key is None else _keyed(name, key)
                for name, key in spec
            )
            return lambda self: tuple([get(self) for get in getters])
        if len(names) >= 2:
            return operator.attrgetter(*names)
        if len(names) == 1:
            get = operator.attrgetter(names[0])
            return lambda self: (get(self),)
        return lambda self: ()

    def _keyed(name: str, key: Callable[[Any], Any]) -> Callable[[Any], Any]:
        get = operator.attrgetter(name)
        return lambda self: key(get(self))

    def _make_eq(values: Callable[[Any], tuple[Any, ...]]) -> Callable[[Any, Any], Any]:
        def __eq__(self: Any, other: Any) -> Any:
            if other.__class__ is not self.__class__:
                return NotImplemented
            return values(self) == values(other)

        return __eq__

    def _make_hash(values: Callable[[Any], tuple[Any, ...]]) -> Callable[[Any], int]:
        def __hash__(self: Any) -> int:
            return hash(values(self))

        return __hash__

    def _make_repr(spec: tuple[tuple[str, Any], ...]) -> Callable[[Any], str]:
        def __repr__(self: Any) -> str:
            parts = []
            for name, show in spec:
                value = getattr(self, name, NOTHING)
                parts.append(f"{name}={value!r}" if show is True else f"{name}={show(value)}")
            # (a class made in a function has "f.<locals>." in its qualified name)
            return f"{self.__class__.__qualname__.rsplit('>.', 1)[-1]}({', '.join(parts)})"

        return __repr__

    def _init_source(fields: tuple[_Field, ...], kw_only: bool, post_init: bool) -> str:
        """The source of ``__init__``: a parameter per init field (named without leading
        underscores, as attrs does), each value converted and stored in ``self.__dict__``."""
        params: list[str] = []
        body = ["_d = self.__dict__"]
        for f in fields:
            name, default, arg = f.name, f.default, f.name.lstrip("_")
            factory = isinstance(default, Factory)
            make = f"_factory_{name}({'self' if factory and default.takes_self else ''})"
            if f.init:
                if default is NOTHING:
                    params.append(arg)
                else:
                    params.append(f"{arg}={'NOTHING' if factory else f'_default_{name}'}")
                if factory:
                    body.append(f"if {arg} is NOTHING: {arg} = {make}")
                value = arg
            elif factory:
                value = make
            elif default is not NOTHING:
                value = f"_default_{name}"
            else:
                continue  # set by __attrs_post_init__, if at all
            if f.converter is not None:
                value = f"_convert_{name}({value})"
            body.append(f"_d[{name!r}] = {value}")
        if post_init:
            body.append("self.__attrs_post_init__()")
        star = ["*"] if kw_only and params else []
        signature = ", ".join(["self", *star, *params])
        return f"def __init__({signature}):\n    " + "\n    ".join(body) + "\n"

    def _namespace(fields: tuple[_Field, ...]) -> dict[str, Any]:
        """What the text of ``__init__`` names besides its parameters."""
        namespace: dict[str, Any] = {"NOTHING": NOTHING}
        for f in fields:
            if isinstance(f.default, Factory):
                namespace[f"_factory_{f.name}"] = f.default.factory
            elif f.default is not NOTHING:
                namespace[f"_default_{f.name}"] = f.default
            if f.converter is not None:
                namespace[f"_convert_{f.name}"] = f.converter
        return namespace

    def _make_init(cls: type, fields: tuple[_Field, ...], kw_only: bool) -> Any:
        """The class's ``__init__``: the generated one for its text if the package was
        generated with it (records_generated.py), else that text exec'd here."""
        namespace = _namespace(fields)
        source = _init_source(fields, kw_only, "__attrs_post_init__" in cls.__dict__)
        factory = _GENERATED.get(source)
        if factory is not None:
            init = factory(**namespace)
        else:
            # exec of the text, not compile(): compile() first builds the ast module's ~120
            # node types (2.5 ms, once per process); exec parses straight to bytecode
            exec(source, namespace)
            init = namespace["__init__"]
            init.__code__ = init.__code__.replace(co_filename=f"<record {cls.__qualname__}>")
        init.__qualname__ = f"{cls.__qualname__}.__init__"
        return init

    def _build(cls: type, frozen: bool, kw_only: bool) -> type:
        for base in cls.__mro__[1:-1]:
            if "__records_fields__" in base.__dict__:
                raise TypeError(f"{cls.__name__}: records do not inherit fields")
        for name in ("__init__", "__eq__", "__hash__", "__repr__", "__setattr__"):
            if name in cls.__dict__:
                raise TypeError(f"{cls.__name__} defines {name}, which a record makes")
        annotations = cls.__dict__.get("__annotations__", {})
        fields = []
        seen_default = False
        for name, annotation in annotations.items():
            if isinstance(annotation, str) and annotation.startswith(
                ("ClassVar", "typing.ClassVar", "t.ClassVar")
            ):
                continue
            value = cls.__dict__.get(name, NOTHING)
            f = value if isinstance(value, _Field) else _Field(value, None, True, None, True, True)
            f.name = name
            fields.append(f)
            if value is not NOTHING:
                delattr(cls, name)
            if f.converter is not None and not frozen:
                raise TypeError(f"{cls.__name__}.{name}: define records take no converter")
            if f.init and not kw_only:
                if f.default is not NOTHING:
                    seen_default = True
                elif seen_default:
                    raise ValueError(
                        "No mandatory attributes allowed after an attribute with a default "
                        f"value or factory.  Attribute in question: {name!r}"
                    )
        for name, value in cls.__dict__.items():
            if isinstance(value, _Field) and name not in annotations:
                raise TypeError(f"{cls.__name__}.{name} is a field without an annotation")
        fields_t = tuple(fields)
        init = _make_init(cls, fields_t, kw_only)
        cls.__init__ = init
        cls.__records_fields__ = fields_t
        eq_values = _values_of(tuple((f.name, f.eq_key) for f in fields_t if f.eq))
        cls.__eq__ = _make_eq(eq_values)
        cls.__repr__ = _make_repr(tuple((f.name, f.repr) for f in fields_t if f.repr))
        if frozen:
            cls.__hash__ = _make_hash(
                _values_of(tuple((f.name, f.eq_key) for f in fields_t if f.hash))
            )
            cls.__setattr__ = _frozen_setattr
            cls.__delattr__ = _frozen_delattr
        else:
            cls.__hash__ = None
        return cls

    def frozen(maybe_cls: type | None = None, *, kw_only: bool = False) -> Any:
        """An immutable, hashable record class (``@frozen`` or ``@frozen(kw_only=True)``)."""
        if maybe_cls is None:
            return lambda cls: _build(cls, True, kw_only)
        return _build(maybe_cls, True, kw_only)

    def define(maybe_cls: type | None = None, *, kw_only: bool = False) -> Any:
        """A mutable, unhashable record class (``@define``)."""
        if maybe_cls is None:
            return lambda cls: _build(cls, False, kw_only)
        return _build(maybe_cls, False, kw_only)

    def has(cls: type) -> bool:
        """Whether ``cls`` is a record class."""
        return getattr(cls, "__records_fields__", None) is not None

    def evolve(inst: Any, /, **changes: Any) -> Any:
        """A copy of the record ``inst`` with ``changes``, made (and checked) by its __init__."""
        cls = inst.__class__
        for f in cls.__records_fields__:
            if f.init:
                arg = f.name.lstrip("_")
                if arg not in changes:
                    changes[arg] = getattr(inst, f.name)
        return cls(**changes)

    #: values asdict returns as they are (attrs' list, for the same results)
    _ATOMIC = frozenset({type(None), bool, int, float, str, complex, bytes, type(...), type})

    def asdict(inst: Any, *, recurse: bool = True) -> dict[str, Any]:
        """The record's fields as a dict; with ``recurse``, records in it (also in tuples,
        lists, sets and dicts, which keep their type; a dict subclass becomes a dict) become
        dicts too. (attrs.asdict, whose collections are always retained.)"""
        fields = inst.__class__.__records_fields__
        if not recurse:
            return {f.name: getattr(inst, f.name) for f in fields}
        return {f.name: _plain(getattr(inst, f.name)) for f in fields}

    def _plain(value: Any) -> Any:
        kind = type(value)
        if kind in _ATOMIC:
            return value
        if getattr(kind, "__records_fields__", None) is not None:
            return asdict(value)
        if issubclass(kind, (tuple, list, set, frozenset)):
            items = [_plain(item) for item in value]
            try:
                return kind(items)
            except TypeError:
                if not issubclass(kind, tuple):
                    raise
                return kind(*items)  # a namedtuple
        if issubclass(kind, dict):
            return {_plain(k): _plain(v) for k, v in value.items()}
        return value
