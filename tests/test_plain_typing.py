"""macminidump.plain_typing's NamedTuple and Protocol behave as typing's, for what the
package declares with them (they exist so that a dump imports no typing)."""

from __future__ import annotations

import pickle
import typing

import pytest
from hypothesis import given
from hypothesis import strategies as st

from macminidump import plain_typing


def _points(base: type) -> type:
    class Point(base):  # type: ignore[valid-type,misc]
        """A point."""

        x: int
        y: int = 0
        label: str = "p"

        @property
        def norm(self) -> int:
            return abs(self.x) + abs(self.y)

        def moved(self, dx: int) -> Point:
            return self._replace(x=self.x + dx)  # type: ignore[attr-defined,no-any-return]

    return Point


OURS: typing.Any = _points(plain_typing.NamedTuple)
TYPINGS: typing.Any = _points(typing.NamedTuple)


@given(x=st.integers(), y=st.integers(), label=st.text(), dx=st.integers())
def test_named_tuple_is_typings(x: int, y: int, label: str, dx: int) -> None:
    ours, theirs = OURS(x, y, label), TYPINGS(x, y, label)
    assert tuple(ours) == tuple(theirs) and ours == theirs
    assert repr(ours) == repr(theirs)
    assert ours._asdict() == theirs._asdict()
    assert ours.norm == theirs.norm and tuple(ours.moved(dx)) == tuple(theirs.moved(dx))
    assert tuple(OURS(x)) == tuple(TYPINGS(x)) and tuple(OURS(x, label=label)) == tuple(
        TYPINGS(x, label=label)
    )
    assert hash(ours) == hash(theirs)


def test_named_tuple_class_is_typings() -> None:
    assert OURS._fields == TYPINGS._fields == ("x", "y", "label")
    assert OURS._field_defaults == TYPINGS._field_defaults
    assert OURS.__doc__ == TYPINGS.__doc__ == "A point."
    assert OURS.__module__ == TYPINGS.__module__ and OURS.__qualname__ == TYPINGS.__qualname__
    assert issubclass(OURS, tuple)
    with pytest.raises(TypeError):
        OURS()  # x has no default
    with pytest.raises(TypeError):

        class Bad(plain_typing.NamedTuple):  # (typing refuses it too)
            a: int = 0
            b: int  # type: ignore[misc]


def test_package_named_tuples_pickle() -> None:
    from macminidump.writer import SegmentPlacement

    fields = {name: 0 for name in SegmentPlacement._fields}
    placement = typing.cast(typing.Any, SegmentPlacement)(**fields)
    assert pickle.loads(pickle.dumps(placement)) == placement


def _sources(base: type, decorate: typing.Callable[[type], type]) -> type:
    @decorate
    class Source(base):  # type: ignore[valid-type,misc]
        @property
        def size(self) -> int:
            raise NotImplementedError

        def read(self, offset: int, length: int) -> bytes:
            raise NotImplementedError

    return Source


class _Full:
    size = 1

    def read(self, offset: int, length: int) -> bytes:
        return b""


class _NoRead:
    size = 1


class _Subclassed(_Full):
    pass


@pytest.mark.parametrize("candidate", [_Full(), _NoRead(), _Subclassed(), b"", 3, None])
def test_protocol_isinstance_is_typings(candidate: object) -> None:
    ours = _sources(plain_typing.Protocol, plain_typing.runtime_checkable)
    theirs = _sources(typing.Protocol, typing.runtime_checkable)  # type: ignore[arg-type]
    assert isinstance(candidate, ours) == isinstance(candidate, theirs)


def test_a_class_implementing_a_protocol_is_an_ordinary_class() -> None:
    source = _sources(plain_typing.Protocol, plain_typing.runtime_checkable)

    class Implemented(source):  # type: ignore[valid-type,misc]
        size = 2

        def read(self, offset: int, length: int) -> bytes:
            return b"xy"[offset : offset + length]

    assert Implemented().read(0, 1) == b"x"
    assert not isinstance(_NoRead(), Implemented)


def test_model_data_source_check() -> None:
    from macminidump.model import BytesSource, DataSource

    assert isinstance(BytesSource(b"ab"), DataSource)
    assert not isinstance(b"ab", DataSource)


def test_named_tuple_helpers_are_typings() -> None:
    """What namedtuple gives besides the fields: ``_make`` (and its length check),
    ``_replace`` (and its check of names), ``__match_args__``, the class docstring of a
    class without one, accessors' docs, and an instance has no ``__dict__``."""
    for cls in (OURS, TYPINGS):
        assert tuple(cls._make([1, 2, "q"])) == (1, 2, "q") and type(cls._make([1, 2, "q"])) is cls
        with pytest.raises(TypeError, match="Expected 3 arguments, got 2"):
            cls._make([1, 2])
        with pytest.raises(ValueError, match=r"Got unexpected field names: \['z'\]"):
            cls(1)._replace(z=2)
        assert cls.__match_args__ == ("x", "y", "label")
        assert cls.x.__doc__ == "Alias for field number 0"
        assert not hasattr(cls(1), "__dict__")
    match OURS(5, 6):
        case OURS(x, y, label):
            assert (x, y, label) == (5, 6, "p")

    def bare(base: type) -> type:
        class Bare(base):  # type: ignore[valid-type,misc]
            a: int
            b: str

        return Bare

    assert bare(plain_typing.NamedTuple).__doc__ == bare(typing.NamedTuple).__doc__


def test_abcs_are_collections_abcs_and_no_collections_is_imported() -> None:
    """The ABCs are collections.abc's own classes; importing plain_typing loads neither
    typing nor the collections package (the point of the module: a dump loads neither)."""
    import collections.abc
    import os
    import subprocess
    import sys
    from pathlib import Path

    for name in ("Callable", "Iterable", "Iterator", "Mapping", "Sequence"):
        assert getattr(plain_typing, name) is getattr(collections.abc, name)
    code = "import sys, macminidump.plain_typing; print(sorted(sys.modules))"
    # (-S: without site, whose .pth files, an editable install's finder among them, may
    # load either before this module is even imported)
    root = str(Path(__file__).resolve().parent.parent)
    loaded = subprocess.run(
        [sys.executable, "-S", "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env=dict(os.environ, PYTHONPATH=root),
    ).stdout
    assert "'collections'" not in loaded and "'typing'" not in loaded, loaded
