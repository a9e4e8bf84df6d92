"""macminidump.records against real attrs: the same declarations, built by each, agree.

Every feature the package uses is declared once (``_declare``) and built twice, by attrs
and by records; each property draws arguments and checks one behaviour on both: __init__
(accepted and rejected arguments, converters, defaults, factories, post-init), eq/ne,
hash, repr, evolve, asdict (both modes), frozen errors, pickle and copy.
"""

from __future__ import annotations

import copy
import pickle
from collections.abc import Callable
from types import MappingProxyType, SimpleNamespace
from typing import Any, NamedTuple

import attrs
import attrs.converters
import pytest
from hypothesis import given
from hypothesis import strategies as st

from macminidump import generate_records, records
from macminidump.arch import Arch, RegKind
from macminidump.model import Region, RegisterSet, Snapshot, Thread


def _declare(lib: Any, optional: Callable[..., Any], namespace: str) -> SimpleNamespace:
    """The test declarations, built by ``lib`` (attrs or records)."""

    @lib.frozen
    class Plain:
        a: int
        b: str = "x"

    @lib.frozen(kw_only=True)
    class Converted:
        a: int
        b: int = lib.field(converter=int)
        # converters run on defaults too
        c: tuple[int, ...] = lib.field(default=[1, 2], converter=tuple)
        d: int | None = lib.field(default=None, converter=optional(int))
        # a factory that sees the fields set before it
        e: int = lib.field(default=lib.Factory(lambda self: self.b * 2, takes_self=True))
        f: list[int] = lib.field(factory=list)

    @lib.frozen
    class Compared:
        # compared (and hashed) through a key
        name: str = lib.field(eq=str.lower)
        values: dict[str, int] = lib.field(
            factory=dict,
            hash=False,
            eq=lib.cmp_using(eq=lambda x, y: sorted(x.items()) == sorted(y.items())),
        )
        note: str = lib.field(default="", eq=False)
        secret: str = lib.field(default="s", repr=False)
        blob: bytes = lib.field(default=b"", repr=lambda b: f"<{len(b)} bytes>")

    @lib.frozen
    class Checked:
        low: int
        high: int
        span: int = lib.field(init=False)
        label: str = lib.field(init=False, default=5, converter=str)

        def __attrs_post_init__(self) -> None:
            if self.low > self.high:
                raise ValueError("low above high")
            object.__setattr__(self, "span", self.high - self.low)

    @lib.frozen
    class Private:
        _x: int
        y: int = 0

    @lib.frozen(kw_only=True)
    class Nested:
        inner: Any = None
        items: tuple[Any, ...] = ()
        mapping: dict[Any, Any] = lib.field(factory=dict, hash=False)
        members: frozenset[int] = frozenset()
        where: Any = None

    @lib.define
    class Mutable:
        a: int
        b: list[int] = lib.field(factory=list)

    classes = SimpleNamespace(**{c.__name__: c for c in (Plain, Converted, Compared)})
    for c in (Checked, Private, Nested, Mutable):
        setattr(classes, c.__name__, c)
    for c in vars(classes).values():
        # findable by pickle: ATTRS.Plain, RECORDS.Plain in this module
        c.__qualname__ = f"{namespace}.{c.__name__}"
        c.__module__ = __name__
    return classes


ATTRS = _declare(attrs, attrs.converters.optional, "ATTRS")
RECORDS = _declare(records, records.optional, "RECORDS")
NAMES = sorted(vars(ATTRS))


# ------------------------------------------------------------------ arguments


class Point(NamedTuple):
    x: Any
    y: Any


class Build:
    """A record to build as an argument, by whichever library the outer one is built by."""

    def __init__(self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]):
        self.name, self.args, self.kwargs = name, args, kwargs

    def __repr__(self) -> str:
        return f"Build({self.name}, {self.args}, {self.kwargs})"


def _materialize(ns: SimpleNamespace, value: Any) -> Any:
    if isinstance(value, Build):
        return make(ns, value.name, value.args, value.kwargs)
    if isinstance(value, Point):
        return Point(*(_materialize(ns, v) for v in value))
    if isinstance(value, (list, tuple)):
        return type(value)(_materialize(ns, v) for v in value)
    if isinstance(value, dict):
        return {k: _materialize(ns, v) for k, v in value.items()}
    return value


def make(ns: SimpleNamespace, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    cls = getattr(ns, name)
    return cls(*_materialize(ns, args), **_materialize(ns, kwargs))


small = st.integers(-5, 5)
anything = st.one_of(small, st.text(max_size=3), st.none())
maybe_int = st.one_of(small, small.map(str), st.just("x"), st.none())
words = st.sampled_from(["ab", "AB", "Ab", "c"])
int_dicts = st.dictionaries(st.sampled_from("xyz"), small, max_size=3)
plain_build = st.builds(lambda a, b: Build("Plain", (a,), {"b": b}), small, st.sampled_from("xy"))


def _call(args: st.SearchStrategy[Any], **kwargs: st.SearchStrategy[Any]) -> Any:
    """(args, kwargs): positional args, and each keyword (or a stray one) maybe given."""
    return st.tuples(
        args.map(tuple), st.fixed_dictionaries({}, optional={**kwargs, "stray": small})
    )


NESTED = {
    "inner": st.one_of(st.none(), plain_build),
    "items": st.lists(plain_build | small, max_size=3).map(tuple),
    "mapping": st.dictionaries(
        st.one_of(st.text(max_size=2), st.tuples(small, small)),
        plain_build | st.lists(small, max_size=2),
        max_size=3,
    ),
    "members": st.frozensets(small, max_size=3),
    "where": st.none() | st.builds(Point, small, plain_build) | st.sets(small, max_size=2),
}

#: arguments of each declaration's __init__, right and wrong
CALLS = {
    "Plain": _call(st.lists(anything, max_size=3), a=anything, b=anything),
    "Converted": _call(
        st.lists(small, max_size=1),
        a=small,
        b=maybe_int,
        c=st.lists(small, max_size=2),
        d=maybe_int,
        e=small,
        f=st.lists(small, max_size=2),
    ),
    "Compared": _call(
        st.lists(words, max_size=2),
        name=words,
        values=int_dicts,
        note=st.text(max_size=2),
        secret=st.text(max_size=2),
        blob=st.binary(max_size=3),
    ),
    "Checked": _call(st.lists(small, max_size=3), low=small, high=small, span=small),
    "Private": _call(st.lists(small, max_size=2), x=small, _x=small, y=small),
    "Nested": _call(st.just(()), **NESTED),
    "Mutable": _call(st.lists(small, max_size=3), a=small, b=st.lists(small, max_size=2)),
}


def _valid(args: st.SearchStrategy[Any], required: Any = None, **optional: Any) -> Any:
    """(args, kwargs) that make an instance: the required keywords, some optional ones."""
    return st.tuples(args.map(tuple), st.fixed_dictionaries(required or {}, optional=optional))


#: arguments that make an instance of each declaration
VALID = {
    "Plain": _valid(st.tuples(small), b=st.text(max_size=2)),
    "Converted": _valid(
        st.just(()),
        {"a": small, "b": small | small.map(str)},
        c=st.lists(small, max_size=2),
        d=st.one_of(st.none(), small, small.map(str)),
        e=small,
        f=st.lists(small, max_size=2),
    ),
    "Compared": _valid(
        st.just(()),
        {"name": words},
        values=int_dicts,
        note=st.text(max_size=2),
        secret=st.text(max_size=2),
        blob=st.binary(max_size=3),
    ),
    "Checked": _valid(st.tuples(small, small).map(sorted)),
    "Private": _valid(st.tuples(small), y=small),
    "Nested": _valid(st.just(()), **NESTED),
    "Mutable": _valid(st.tuples(small), b=st.lists(small, max_size=2)),
}


def outcome(call: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[str, Any]:
    try:
        return "made", call(*args, **kwargs)
    except Exception as e:  # the kind of error is what must agree
        return "raised", type(e).__name__


def field_names(cls: type) -> list[str]:
    if attrs.has(cls):
        return [a.name for a in attrs.fields(cls)]
    return [f.name for f in cls.__records_fields__]  # type: ignore[attr-defined]


def norm(value: Any) -> Any:
    """A record (of either library) as (class name, field values), recursively."""
    cls = type(value)
    if attrs.has(cls) or records.has(cls):
        return (
            cls.__name__,
            tuple((n, norm(getattr(value, n, "unset"))) for n in field_names(cls)),
        )
    if isinstance(value, Point):
        return Point(*(norm(v) for v in value))
    if isinstance(value, (list, tuple, set)):
        return type(value)(norm(v) for v in value)
    if isinstance(value, dict):
        return {norm(k): norm(v) for k, v in value.items()}
    if isinstance(value, frozenset):
        return frozenset(norm(v) for v in value)
    return value


def pair(name: str, call: tuple[tuple[Any, ...], dict[str, Any]]) -> tuple[Any, Any]:
    """The same (valid) call made of each library's class."""
    return make(ATTRS, name, *call), make(RECORDS, name, *call)


names = pytest.mark.parametrize("name", NAMES)


# ------------------------------------------------------------------ properties


@names
@given(data=st.data())
def test_init_accepts_rejects_and_converts_alike(name: str, data: st.DataObject) -> None:
    call = data.draw(CALLS[name])
    made = [outcome(make, ns, name, *call) for ns in (ATTRS, RECORDS)]
    assert made[0][0] == made[1][0], made
    assert norm(made[0][1]) == norm(made[1][1])


@names
@given(data=st.data())
def test_eq_and_ne_agree(name: str, data: st.DataObject) -> None:
    first = data.draw(VALID[name])
    # the same arguments again, or others (equal only through a key or an eq=False field)
    second = data.draw(st.just(first) | VALID[name])
    x1, y1 = pair(name, first)
    x2, y2 = pair(name, second)
    assert (x1 == x2) == (y1 == y2)
    assert (x1 != x2) == (y1 != y2)
    assert y1 == copy.copy(y1)
    # only an instance of the same class is comparable
    assert x1.__eq__(x1.__dict__ if hasattr(x1, "__dict__") else ()) is NotImplemented
    assert y1.__eq__(y1.__dict__) is NotImplemented
    assert y1 != x1 and x1 != y1


@names
@given(data=st.data())
def test_hash_agrees_and_follows_eq(name: str, data: st.DataObject) -> None:
    first = data.draw(VALID[name])
    second = data.draw(st.just(first) | VALID[name])
    x1, y1 = pair(name, first)
    x2, y2 = pair(name, second)
    hashes = [outcome(hash, v) for v in (x1, y1)]
    assert hashes[0][0] == hashes[1][0], hashes
    if hashes[1][0] == "made" and y1 == y2:
        assert hash(y1) == hash(y2)


@names
@given(data=st.data())
def test_repr_agrees(name: str, data: st.DataObject) -> None:
    x, y = pair(name, data.draw(VALID[name]))
    assert repr(x).replace("ATTRS.", "") == repr(y).replace("RECORDS.", "")


@names
@given(data=st.data())
def test_evolve_agrees(name: str, data: st.DataObject) -> None:
    x, y = pair(name, data.draw(VALID[name]))
    _, changes = data.draw(CALLS[name])
    results = [
        outcome(attrs.evolve, x, **_materialize(ATTRS, changes)),
        outcome(records.evolve, y, **_materialize(RECORDS, changes)),
    ]
    assert results[0][0] == results[1][0], results
    assert norm(results[0][1]) == norm(results[1][1])


@names
@pytest.mark.parametrize("recurse", [True, False])
@given(data=st.data())
def test_asdict_agrees(name: str, recurse: bool, data: st.DataObject) -> None:
    x, y = pair(name, data.draw(VALID[name]))
    from_attrs = attrs.asdict(x, recurse=recurse)
    from_records = records.asdict(y, recurse=recurse)
    assert norm(from_attrs) == norm(from_records)
    # (the types too: norm() keeps lists apart from tuples)
    kinds = [[type(v).__name__ for v in d.values()] for d in (from_attrs, from_records)]
    assert kinds[0] == kinds[1]
    assert records.has(type(y)) and not records.has(type(from_records))


@names
@given(data=st.data(), attribute=st.sampled_from(["a", "name", "low", "_x", "inner", "new"]))
def test_assignment_and_deletion_agree(name: str, data: st.DataObject, attribute: str) -> None:
    x, y = pair(name, data.draw(VALID[name]))
    if name == "Mutable" and attribute != "a":
        return  # attrs' define is slotted: no other attributes (records: a __dict__ class)
    for action in (setattr, delattr):
        args = (attribute, 7) if action is setattr else (attribute,)
        results = [outcome(action, v, *args) for v in (x, y)]
        assert results[0][0] == results[1][0], results
        assert results[1][1] in ("FrozenInstanceError", "AttributeError", None)
        assert norm(x) == norm(y)
    if name != "Mutable":
        with pytest.raises(records.FrozenInstanceError):
            y.a = 1
        with pytest.raises(AttributeError):  # (FrozenInstanceError is one, as attrs')
            del y.a


@names
@given(data=st.data())
def test_pickle_and_copy_round_trip(name: str, data: st.DataObject) -> None:
    x, y = pair(name, data.draw(VALID[name]))
    for v in (x, y):
        for again in (pickle.loads(pickle.dumps(v)), copy.copy(v), copy.deepcopy(v)):
            assert type(again) is type(v)
            assert norm(again) == norm(v)
            assert again == v


# ------------------------------------------------------------------ declarations refused


@pytest.mark.parametrize("lib", [attrs, records], ids=["attrs", "records"])
def test_a_mandatory_field_after_a_default_is_refused(lib: Any) -> None:
    class Late:
        a: int = 0
        b: int

    with pytest.raises(ValueError, match="No mandatory attributes"):
        lib.frozen(Late)
    with pytest.raises(ValueError, match="mutually exclusive"):
        lib.field(default=1, factory=list)


def test_records_refuses_what_it_does_not_implement() -> None:
    @records.frozen
    class Base:
        a: int

    class Derived(Base):
        b: int

    with pytest.raises(TypeError, match="inherit"):
        records.frozen(Derived)

    class OwnEq:
        a: int

        def __eq__(self, other: object) -> bool:
            return True

    with pytest.raises(TypeError, match="__eq__"):
        records.frozen(OwnEq)

    class Converting:
        a: int = records.field(converter=int)

    with pytest.raises(TypeError, match="converter"):
        records.define(Converting)  # attrs would convert on assignment too


# ------------------------------------------------------------------ the package's records


def test_model_records_pickle_copy_and_cache() -> None:
    regs = RegisterSet(RegKind.GPR, {"pc": 1, "sp": 2})
    thread = Thread(id=1, regsets=[regs])
    region = Region(address=0x1000, data=b"ab", protection="r-x")
    snapshot = Snapshot(arch=Arch.ARM64, threads=[thread], regions=[region])
    assert snapshot.memory is snapshot.memory  # functools.cached_property on a record
    assert isinstance(regs.values, MappingProxyType)
    for value in (regs, thread, region, snapshot):
        for again in (pickle.loads(pickle.dumps(value)), copy.copy(value), copy.deepcopy(value)):
            assert again == value and hash(again) == hash(value)
    # RegisterSet keeps its own __reduce__ (a mappingproxy cannot be pickled)
    assert RegisterSet.__reduce__(regs) == (RegisterSet, (RegKind.GPR, {"pc": 1, "sp": 2}))
    assert region.max_protection == region.protection  # Factory(takes_self=True)
    assert region == Region(address=0x1000, data=memoryview(b"ab"), protection=5)  # eq=key
    assert repr(thread).startswith("Thread(id=1, regsets=(RegisterSet(kind=")


def test_optional_lets_none_through() -> None:
    assert records.optional(bytes)(None) is None
    assert records.optional(bytes)(bytearray(b"a")) == b"a"


def test_the_generated_inits_are_the_declarations() -> None:
    checked_in = generate_records.PATH.read_text()
    assert checked_in == generate_records.render(), (
        f"{generate_records.PATH.name} differs from the package's records: "
        f"run `{generate_records.COMMAND}`"
    )
    assert generate_records.main(["--check"]) == 0


def test_the_package_records_use_the_generated_inits() -> None:
    classes = generate_records.record_classes()
    assert Region in classes and Snapshot in classes and len(classes) >= 30
    for cls in classes:
        code = cls.__init__.__code__  # type: ignore[misc]
        assert code.co_filename == str(generate_records.PATH), cls
        assert cls.__init__.__qualname__ == f"{cls.__qualname__}.__init__"  # type: ignore[misc]
    # a declaration not in the table (every one in this file) is exec'd instead
    assert RECORDS.Plain.__init__.__code__.co_filename.startswith("<record ")
