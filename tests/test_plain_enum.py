"""macminidump.plain_enum against the real enum: every enum class of the package, and its
twin built by ``enum`` from the same bases, members and class body, behave alike.

The package's enum classes are found by importing every module that uses plain_enum; each
test runs over all of them. Exhaustive over members: name, value, repr, str, format,
hash, equality and ordering with the mixed-in type, bool, pickle and copy, attribute
guards; over classes: iteration, len, reversed, __members__, repr, reassignment and
deletion. Hypothesis, one property per invariant: lookups by arbitrary values and names,
``in`` on a class, and for IntFlag classes construction from any int and ``|``, ``&``,
``^``, ``~``, membership and iteration of the result. Also: the methods the package's
enums define (Protection.parse and text), construct's Enum and FlagsEnum over the
classes, what plain_enum refuses, and that it imports none of the enum family.
"""

from __future__ import annotations

import copy
import enum
import importlib
import operator
import os
import pickle
import re
import subprocess
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import construct
import pytest
from hypothesis import given
from hypothesis import strategies as st

from macminidump import plain_enum
from macminidump.model import Protection

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "macminidump"

_REAL_BASE: dict[Any, Any] = {
    plain_enum.Enum: enum.Enum,
    plain_enum.IntEnum: enum.IntEnum,
    plain_enum.IntFlag: enum.IntFlag,
}
#: what plain_enum itself puts in a class (the rest of its __dict__ is the class body)
_MADE_BY_PLAIN_ENUM = {
    "_member_map_",
    "_value2member_map_",
    "_member_names_",
    "_members_",
    "_flag_mask_",
    "_all_bits_",
    "_value_repr_",
    "__dict__",
    "__weakref__",
}


def _package_enums() -> list[Any]:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name == "plain_enum.py" or "plain_enum import" not in path.read_text():
            continue
        name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        module = importlib.import_module(name)
        found += [
            value
            for value in vars(module).values()
            if isinstance(value, type)
            and issubclass(value, plain_enum.Enum)
            and value.__module__ == name
            and value._member_map_
        ]
    return found


def _twin(cls: Any) -> Any:
    """The class the real enum builds from ``cls``'s bases, members and body."""
    bases = tuple(_REAL_BASE.get(b, b) for b in cls.__bases__)
    namespace = enum.EnumMeta.__prepare__(cls.__name__, bases)
    for name, member in cls.__members__.items():
        namespace[name] = member.value
    inherited = {id(v) for base in _REAL_BASE for v in vars(base).values()}
    for key, value in vars(cls).items():
        if key in cls.__members__ or key in _MADE_BY_PLAIN_ENUM or id(value) in inherited:
            continue
        namespace[key] = value
    return enum.EnumMeta(cls.__name__, bases, namespace)


ENUMS = _package_enums()
TWINS = {cls: _twin(cls) for cls in ENUMS}
FLAGS = [cls for cls in ENUMS if issubclass(cls, plain_enum.IntFlag)]
IDS = [f"{cls.__module__}.{cls.__qualname__}" for cls in ENUMS]
# A composite flag keeps the value it was first made from (SegmentFlags(False) first gives
# one whose value is False, in both): made here from ints in ours and in the twin alike,
# so the order the tests (and the rest of the suite) run in does not decide
for _flag in FLAGS:
    for _value in range(-64, 65):
        _flag(_value), TWINS[_flag](_value)


def test_every_enum_of_the_package_is_found_and_none_uses_the_real_enum() -> None:
    assert len(ENUMS) == 27 and len(FLAGS) == 3, IDS
    uses_enum = re.compile(r"^\s*(import enum\b|from enum import)", re.M)
    for path in PACKAGE.rglob("*.py"):
        text = path.read_text()
        if path.name == "plain_enum.py":
            text = text.split("if TYPE_CHECKING:")[0]  # the real names, for mypy only
        assert not uses_enum.search(text), path


def test_the_module_imports_none_of_the_enum_family() -> None:
    code = "import sys, macminidump.plain_enum; print(' '.join(sorted(sys.modules)))"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    # -S: site (and the .pth files of an editable install) would import them first
    out = subprocess.run(
        [sys.executable, "-S", "-c", code], capture_output=True, text=True, env=env, cwd=ROOT
    )
    assert out.returncode == 0, out.stderr
    loaded = set(out.stdout.split())
    assert "macminidump.plain_enum" in loaded
    family = {"enum", "functools", "collections", "types", "operator", "re", "typing"}
    assert not loaded & family, sorted(loaded & family)


# -- outcomes, compared between ours and the twin ----------------------------------------


def _outcome(thunk: Callable[[], Any]) -> Any:
    """What a call gives, comparable across the two implementations: a member described
    (its class by name), another value as it is, an exception by type and message."""
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result = thunk()
    except Exception as e:
        return ("raises", type(e).__name__, str(e), [str(w.message) for w in caught])
    return ("gives", _describe(result), [str(w.message) for w in caught])


def _alike(action: Callable[..., Any], ours: tuple[Any, ...], theirs: tuple[Any, ...]) -> bool:
    """``action`` does the same with our arguments as with the twin's."""
    return bool(_outcome(lambda: action(*ours)) == _outcome(lambda: action(*theirs)))


def _describe(value: Any) -> Any:
    if isinstance(value, (plain_enum.Enum, enum.Enum)):
        return (
            "member",
            type(value).__name__,
            value.name,
            value.value,
            type(value.value).__name__,
            repr(value),
            str(value),
            format(value),
            hash(value),
            bool(value),
        )
    if isinstance(value, (list, tuple)):
        return [_describe(v) for v in value]
    return (type(value).__name__, value)


def _values(cls: Any) -> st.SearchStrategy[Any]:
    """Values to look up: the members' own, near them, and anything."""
    known = [m.value for m in cls.__members__.values()]
    return st.one_of(
        st.sampled_from(known),
        st.sampled_from(list(cls.__members__.values())),
        st.integers(),
        st.integers(-20, 20),
        st.text(max_size=12),
        st.none(),
        st.booleans(),
        st.floats(allow_nan=False),
        st.lists(st.integers(), max_size=2),  # unhashable
    )


@st.composite
def _class_and_value(draw: st.DrawFn) -> tuple[Any, Any]:
    cls = draw(st.sampled_from(ENUMS))
    return cls, draw(_values(cls))


@given(_class_and_value())
def test_lookup_by_value_is_enums(case: tuple[Any, Any]) -> None:
    cls, value = case
    twin_value = TWINS[cls](value.value) if isinstance(value, cls) else value
    assert _outcome(lambda: cls(value)) == _outcome(lambda: TWINS[cls](twin_value))


@given(st.sampled_from(ENUMS), st.one_of(st.text(max_size=12), st.sampled_from(["NONE", "X"])))
def test_lookup_by_name_is_enums(cls: Any, name: str) -> None:
    for key in [name, *cls.__members__]:
        assert _alike(operator.getitem, (cls, key), (TWINS[cls], key))


@given(_class_and_value())
def test_in_a_class_is_enums(case: tuple[Any, Any]) -> None:
    cls, value = case
    if isinstance(value, cls):
        assert value in cls and TWINS[cls](value.value) in TWINS[cls]
    else:  # anything but a member: a TypeError after a DeprecationWarning, in 3.11
        assert _outcome(lambda: value in cls) == _outcome(lambda: value in TWINS[cls])


# -- every member, exhaustively ----------------------------------------------------------

_FORMATS = ["", ">8", "<8", "^9", "s", "d", "x", "#x", "08b", "+d", ",", "!"]


def _pairs(cls: Any) -> list[tuple[Any, Any]]:
    twin = TWINS[cls]
    return [(cls.__members__[name], twin.__members__[name]) for name in cls.__members__]


@pytest.mark.parametrize("cls", ENUMS, ids=IDS)
def test_members_print_alike(cls: Any) -> None:
    for ours, theirs in _pairs(cls):
        assert _describe(ours) == _describe(theirs)
        assert f"{ours}" == f"{theirs}" and f"{ours!s:>9}" == f"{theirs!s:>9}"
        for spec in _FORMATS:
            assert _alike(format, (ours, spec), (theirs, spec)), spec
        assert ours.__doc__ == theirs.__doc__


@pytest.mark.parametrize("cls", ENUMS, ids=IDS)
def test_members_compare_and_hash_alike(cls: Any) -> None:
    pairs = _pairs(cls)
    others = [p[0].value for p in pairs] + [0, 1, -1, "", "x", None]
    for ours, theirs in pairs:
        assert isinstance(ours, cls) and isinstance(theirs, TWINS[cls])
        for kind in (int, str):
            assert isinstance(ours, kind) == isinstance(theirs, kind)
        assert (hash(ours), bool(ours)) == (hash(theirs), bool(theirs))
        for other in others + [p[0] for p in pairs]:
            twin_other = TWINS[cls](other.value) if isinstance(other, cls) else other
            for op in ("==", "!=", "<", "<=", ">", ">="):
                check = f"a {op} b"
                assert _alike(
                    eval, (check, {"a": ours, "b": other}), (check, {"a": theirs, "b": twin_other})
                ), (ours, op, other)
        # a member is a key for its value, and its value a key for it, where they are equal
        assert ({ours: 1}.get(ours.value), {ours.value: 1}.get(ours)) == (
            {theirs: 1}.get(theirs.value),
            {theirs.value: 1}.get(theirs),
        )


@pytest.mark.parametrize("cls", ENUMS, ids=IDS)
def test_members_pickle_and_copy_to_themselves(cls: Any) -> None:
    for ours, theirs in _pairs(cls):
        for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
            assert pickle.loads(pickle.dumps(ours, protocol)) is ours
            # by value, as the real enum's: pickles of either load as the other
            assert ours.__reduce_ex__(protocol) == (cls, (theirs.value,))
            assert theirs.__reduce_ex__(protocol) == (TWINS[cls], (theirs.value,))
        assert copy.copy(ours) is ours and copy.deepcopy(ours) is ours
        assert copy.deepcopy({"k": [ours]})["k"][0] is ours


@pytest.mark.parametrize("cls", ENUMS, ids=IDS)
def test_members_keep_their_name_and_value(cls: Any) -> None:
    for ours, theirs in _pairs(cls):
        for attribute in ("name", "value"):
            assert _alike(setattr, (ours, attribute, 1), (theirs, attribute, 1))
            assert _alike(delattr, (ours, attribute), (theirs, attribute))
        assert ours.name == theirs.name and ours.value == theirs.value


@pytest.mark.parametrize("cls", ENUMS, ids=IDS)
def test_classes_alike(cls: Any) -> None:
    twin = TWINS[cls]
    assert [m.name for m in cls] == [m.name for m in twin]
    assert [m.name for m in reversed(cls)] == [m.name for m in reversed(twin)]
    assert len(cls) == len(twin) and bool(cls) and bool(twin)
    assert [(k, m.name, m.value) for k, m in cls.__members__.items()] == [
        (k, m.name, m.value) for k, m in twin.__members__.items()
    ]
    assert type(cls.__members__) is type(twin.__members__)
    assert repr(cls) == repr(twin) and str(cls) != "" and cls.__doc__ == twin.__doc__
    assert (cls.__name__, cls.__qualname__, cls.__module__) == (
        twin.__name__,
        twin.__qualname__,
        twin.__module__,
    )
    for kind in (int, str):
        assert issubclass(cls, kind) == issubclass(twin, kind)
    first = next(iter(cls.__members__))
    assert _outcome(lambda: setattr(cls, first, 1)) == _outcome(lambda: setattr(twin, first, 1))
    assert _outcome(lambda: delattr(cls, first)) == _outcome(lambda: delattr(twin, first))
    assert _outcome(lambda: cls.__members__.pop(first)) == _outcome(
        lambda: twin.__members__.pop(first)
    )
    assert getattr(cls, first) is cls[first] and first in cls.__members__
    # a class with members cannot be extended
    with pytest.raises(TypeError):
        type(cls)("Extended", (cls,), {"__module__": __name__, "__qualname__": "Extended"})


# -- flags ---------------------------------------------------------------------------------

_INTS = st.one_of(st.integers(-40, 40), st.integers())


@given(st.sampled_from(FLAGS), _INTS)
def test_flag_of_any_int_is_enums(cls: Any, value: int) -> None:
    ours, theirs = cls(value), TWINS[cls](value)
    assert _describe(ours) == _describe(theirs)
    assert cls(value) is ours  # made once
    assert [m.name for m in ours] == [m.name for m in theirs] and len(ours) == len(theirs)


@given(st.sampled_from(FLAGS), _INTS, _INTS, st.sampled_from(["|", "&", "^"]))
def test_flag_operators_are_enums(cls: Any, a: int, b: int, op: str) -> None:
    twin = TWINS[cls]
    for left, right, twin_left, twin_right in [
        (cls(a), cls(b), twin(a), twin(b)),
        (cls(a), b, twin(a), b),
        (a, cls(b), a, twin(b)),
        (cls(a), "x", twin(a), "x"),
    ]:
        check = f"l {op} r"
        assert _alike(
            eval, (check, {"l": left, "r": right}), (check, {"l": twin_left, "r": twin_right})
        )


@given(st.sampled_from(FLAGS), _INTS)
def test_flag_invert_is_enums(cls: Any, value: int) -> None:
    assert _describe(~cls(value)) == _describe(~TWINS[cls](value))


@given(st.sampled_from(FLAGS), _INTS, st.one_of(_INTS, st.text(max_size=2)))
def test_flag_membership_is_enums(cls: Any, a: int, b: Any) -> None:
    twin = TWINS[cls]
    assert _outcome(lambda: b in cls(a)) == _outcome(lambda: b in twin(a))
    if isinstance(b, int):
        assert _outcome(lambda: cls(b) in cls(a)) == _outcome(lambda: twin(b) in twin(a))
        assert _outcome(lambda: cls(b) in cls) == _outcome(lambda: twin(b) in twin)


# -- what the package's enums define, and their consumers ---------------------------------


@given(st.one_of(st.text(alphabet="rwx-", min_size=3, max_size=3), st.text(max_size=4)))
def test_protection_methods_are_enums(text: str) -> None:
    twin = TWINS[Protection]
    assert _outcome(lambda: Protection.parse(text)) == _outcome(lambda: twin.parse(text))
    for value in range(8):
        assert Protection(value).text() == twin(value).text()


@pytest.mark.parametrize("cls", [c for c in ENUMS if issubclass(c, int)], ids=str)
def test_constructs_enum_and_flags_enum_read_them_alike(cls: Any) -> None:
    twin = TWINS[cls]
    kind = construct.FlagsEnum if cls in FLAGS else construct.Enum
    ours, theirs = kind(construct.Int64ul, cls), kind(construct.Int64ul, twin)
    for value in sorted({m.value for m in cls} | {0, 3, 5, 7, 8, 9, 1 << 40}):
        data = value.to_bytes(8, "little")
        assert ours.parse(data) == theirs.parse(data)
        built = ours.parse(data)
        assert ours.build(built) == theirs.build(built)
        assert kind is construct.FlagsEnum or ours.build(built) == data  # (flags drop unknowns)


def test_what_it_refuses() -> None:
    def declare(base: Any, body: dict[str, Any], **keywords: Any) -> Any:
        namespace = {"__module__": __name__, "__qualname__": "Declared", **body}
        return type(base)("Declared", (base,), namespace, **keywords)

    for body in (
        {"_missing_": classmethod(lambda cls, v: None)},
        {"_ignore_": ["X"]},
        {"_private": 1},
        {"name": 1},
        {"A": "1"},  # not the mixed-in int
    ):
        with pytest.raises(TypeError):
            declare(plain_enum.IntEnum, body)
    for value in (3, -1):  # multi-bit, negative
        with pytest.raises(TypeError):
            declare(plain_enum.IntFlag, {"A": 1, "B": value})
    with pytest.raises(TypeError):
        declare(plain_enum.IntFlag, {"A": 1}, boundary="STRICT")
    with pytest.raises(TypeError):
        declare(plain_enum.Enum, {"A": [1]})  # unhashable
    with pytest.raises(TypeError):
        plain_enum.Enum(1)  # (no members)
    # what it keeps of a declaration: aliases, methods, private methods
    kept = declare(plain_enum.IntEnum, {"A": 1, "B": 2, "C": 1, "_twice": lambda self: 2 * self})
    assert list(kept) == [kept.A, kept.B] and kept.C is kept.A and kept(1) is kept.A
    assert list(kept.__members__) == ["A", "B", "C"] and kept.B._twice() == 4
