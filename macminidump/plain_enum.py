"""The part of the standard ``enum`` the package's enums use, without importing enum.

``import enum`` pulls in functools and collections (and re and signal pull in enum): on a
dump that family costs ~18 ms of wall time, and none of it is saved unless no module of a
dump imports any of them. Python 3.11's ``EnumType`` also takes ~3-4 ms to build the
package's enum classes, and a member lookup (``RegKind("gpr")``) or a flag operation
(``Protection.READ | Protection.WRITE``) runs three or four Python frames. As
``records`` does for attrs and ``plain_typing`` for typing, the names come from ``enum``
when type checking, so mypy sees (and its enum plugin types) the real ones; at run time
this module's ``Enum``, ``IntEnum`` and ``IntFlag`` build the classes, importing only
``_operator`` (built into the interpreter).
tests/test_plain_enum.py builds a twin of every enum of the package with the real
``enum`` and checks that the two behave alike.

What is kept, with Python 3.11's behaviour:

- Classes: ``class C(Enum)``, ``class C(str, Enum)`` (any one data type mixed in),
  ``class C(IntEnum)``, ``class C(IntFlag)``; methods, class methods, properties and a
  docstring in the body; aliases (a second name for a value) outside ``IntFlag``.
  ``C(value)`` (``ValueError: 5 is not a valid C``), ``C["NAME"]`` (``KeyError``),
  ``iter``/``reversed``/``len`` (aliases, and a flag's zero and multi-bit values, left
  out), ``__members__`` (every name, aliases too, read only), ``member in C`` (anything
  but a member raises TypeError after a DeprecationWarning, as 3.11 does), ``repr(C)``;
  members cannot be reassigned or deleted, and a class with members cannot be extended.
- Members: ``.name``, ``.value``; ``repr`` ``<C.NAME: value>``; ``str`` and ``format``
  give the data type's text for IntEnum and IntFlag and ``C.NAME`` otherwise (a
  ``__str__`` in the body is used by both); equality, hashing, ordering and ``bool``
  are the data type's (a plain Enum member equals only itself and hashes as its name);
  ``pickle`` by value, ``copy``/``deepcopy`` give the member itself.
- ``IntFlag`` (boundary KEEP): ``|``, ``&``, ``^`` with members or ints (either side),
  ``~``; any int is a value: a composite gets the name ``A|B`` (plus ``|8`` for bits no
  member has, no name for none), is made once and kept; a member iterates over, counts
  and tests ``in`` its single-bit members.

Deliberately not provided (refused where a class declares it, so nothing silently
differs): ``auto``, ``unique``, ``Flag``, ``StrEnum``, ``ReprEnum``, the functional API
(``Enum("C", "A B")``), ``_missing_``, ``_ignore_``, ``_order_`` and every other
``_sunder_`` name, class keywords (``boundary=``), other ``_names`` that are not methods,
a member value not exactly of the mixed-in type or not hashable, multi-bit or negative
``IntFlag`` members, and a member called ``name`` or ``value``. Members are not instances of
``enum.Enum``, and the classes are not ``enum.EnumType``: code that special-cases enum
classes (Hypothesis' ``sampled_from(C)``) is given ``list(C)``. ``dir()`` of a class or
member is Python's default. Unlike enum, a name given twice in one class body is not
caught (the class body is a plain dict: the last value wins).
"""

from __future__ import annotations

TYPE_CHECKING = False  # (not typing's: a dump imports no typing; see plain_typing)

if TYPE_CHECKING:
    from enum import Enum, IntEnum, IntFlag
else:
    import _operator  # (the C core: nothing more to import)

    _mappingproxy = type(type.__dict__)  # types.MappingProxyType, without importing types
    #: a data type's methods that an Enum's own replace, unless the class body has one
    _ENUM_METHODS = ("__repr__", "__str__", "__format__", "__reduce_ex__")

    def _is_descriptor(value):
        return (
            hasattr(value, "__get__") or hasattr(value, "__set__") or hasattr(value, "__delete__")
        )

    def _refused(cls_name, what):
        return TypeError(f"{cls_name}: {what} (not in macminidump.plain_enum; see its docstring)")

    def _split_body(name, namespace, ours):
        """The class body's members (name -> value), and the rest."""
        members, body = {}, {}
        for key, value in namespace.items():
            if key[:1] != "_":
                if _is_descriptor(value):
                    body[key] = value
                elif key in ("name", "value"):
                    raise _refused(name, f"a member named {key!r}")
                else:
                    members[key] = value
                continue
            if not ours:
                dunder = key[:2] == "__" and key[-2:] == "__"
                if not dunder and key[-1:] == "_":
                    raise _refused(name, f"the _sunder_ name {key!r}")
                if not dunder and not _is_descriptor(value):
                    raise _refused(
                        name, f"{key!r}, a '_' name that is neither a member nor a method"
                    )
            body[key] = value
        return members, body

    class _EnumType(type):
        """The metaclass: builds the members, and the class-level behaviour of an enum."""

        def __new__(mcls, name, bases, namespace, **keywords):
            if keywords:
                raise _refused(name, f"class keywords {sorted(keywords)}")
            ours = namespace.get("__module__") == __name__  # Enum, IntEnum, IntFlag
            first_enum = None
            if bases:
                first_enum = bases[-1]
                if not isinstance(first_enum, _EnumType):
                    raise TypeError(f"{name}: the last base must be an enum class")
                for base in bases:
                    if isinstance(base, _EnumType) and base._member_map_:
                        raise TypeError(f"<enum {name!r}> cannot extend {base!r}")
            members, body = _split_body(name, namespace, ours)
            member_map, by_value = {}, {}
            body["_member_map_"] = member_map
            body["_value2member_map_"] = by_value
            cls = super().__new__(mcls, name, bases, body)
            if first_enum is None:
                cls._member_names_, cls._members_ = (), ()
                return cls
            mixin = next(
                (b for b in cls.__mro__ if not isinstance(b, _EnumType) and b is not object),
                object,
            )
            set_class = type.__setattr__  # past our __setattr__, which guards members
            for method in _ENUM_METHODS:
                if method not in body:
                    found = getattr(cls, method)
                    if found is getattr(mixin, method) or found is getattr(object, method):
                        set_class(cls, method, getattr(first_enum, method))
            # the value's repr is the data type's (a flag of False shows 0)
            cls._value_repr_ = repr if mixin is object else mixin.__repr__
            flag = cls._flag_
            canonical = []
            for key, value in members.items():
                if mixin is not object and type(value) is not mixin:
                    raise _refused(name, f"{key} = {value!r}, not of the mixed-in {mixin.__name__}")
                if flag and (value < 0 or value & (value - 1)):
                    raise _refused(name, f"the IntFlag member {key} = {value!r}, not 0 or one bit")
                try:
                    member = by_value.get(value)
                except TypeError:
                    raise _refused(name, f"{key} = {value!r}, an unhashable value") from None
                if member is None:
                    member = object.__new__(cls) if mixin is object else mixin.__new__(cls, value)
                    state = member.__dict__
                    state["name"], state["value"] = key, value
                    by_value[value] = member
                    if not flag or value:
                        canonical.append(member)
                member_map[key] = member
                set_class(cls, key, member)
            cls._members_ = tuple(canonical)
            cls._member_names_ = tuple(m.name for m in canonical)
            if flag:
                mask = 0
                for member in canonical:
                    mask |= member.value
                cls._flag_mask_, cls._all_bits_ = mask, (1 << mask.bit_length()) - 1
            return cls

        def __call__(cls, value):
            # the hot path: one dict lookup, everything else only when it misses
            try:
                return cls._value2member_map_[value]
            except KeyError:
                pass
            except TypeError:  # an unhashable value: compared with each member's
                for member in cls._member_map_.values():
                    if member.value == value:
                        return member
            return cls._not_a_value_(value)

        def __getitem__(cls, name):
            return cls._member_map_[name]

        def __iter__(cls):
            return iter(cls._members_)

        def __reversed__(cls):
            return reversed(cls._members_)

        def __len__(cls):
            return len(cls._members_)

        def __bool__(cls):
            return True  # a class, even one without members (not its __len__)

        def __contains__(cls, member):
            if not isinstance(member, Enum):
                import warnings  # (only on this error path: a dump imports no warnings)

                warnings.warn(
                    "in 3.12 __contains__ will no longer raise TypeError, but will return True"
                    " or\nFalse depending on whether the value is a member or the value of a"
                    " member",
                    DeprecationWarning,
                    stacklevel=2,
                )
                raise TypeError(
                    f"unsupported operand type(s) for 'in': '{type(member).__qualname__}'"
                    " and 'EnumType'"
                )
            return isinstance(member, cls) and member.name in cls._member_map_

        @property
        def __members__(cls):
            return _mappingproxy(cls._member_map_)

        def __repr__(cls):
            return f"<{'flag' if cls._flag_ else 'enum'} {cls.__name__!r}>"

        def __setattr__(cls, name, value):
            if name in cls.__dict__.get("_member_map_", ()):
                raise AttributeError(f"cannot reassign member {name!r}")
            super().__setattr__(name, value)

        def __delattr__(cls, name):
            if name in cls.__dict__.get("_member_map_", ()):
                raise AttributeError(f"{cls.__name__!r} cannot delete member {name!r}.")
            super().__delattr__(name)

    class Enum(metaclass=_EnumType):
        """Base of an enumeration (see the module's docstring)."""

        _flag_ = False

        @classmethod
        def _not_a_value_(cls, value):
            if type(value) is cls:
                return value  # a plain Enum's member, which equals no value
            if not cls._member_map_:
                raise TypeError(f"{cls!r} has no members defined")
            raise ValueError(f"{value!r} is not a valid {cls.__qualname__}")

        def __repr__(self):
            cls = type(self)
            return f"<{cls.__name__}.{self.name}: {cls._value_repr_(self.value)}>"

        def __str__(self):
            return f"{type(self).__name__}.{self.name}"

        def __format__(self, format_spec):
            return str.__format__(str(self), format_spec)

        def __hash__(self):
            return hash(self.name)

        def __reduce_ex__(self, protocol):
            return type(self), (self.value,)

        def __copy__(self):
            return self

        def __deepcopy__(self, memo):
            return self

        def __setattr__(self, key, value):
            if key in ("name", "value"):
                raise AttributeError(f"<enum 'Enum'> cannot set attribute {key!r}")
            object.__setattr__(self, key, value)

        def __delattr__(self, key):
            if key in ("name", "value"):
                raise AttributeError(f"<enum 'Enum'> cannot delete attribute {key!r}")
            object.__delattr__(self, key)

    class IntEnum(int, Enum):
        """Base of an enumeration of ints: members are ints, and print as ints."""

        __str__ = int.__repr__
        __format__ = int.__format__

    def _bitwise(name, op):
        """An IntFlag's ``|``, ``&`` or ``^`` (``op``) with a member or an int, on either
        side: int's own operator is applied to plain ints (an IntFlag operand would
        re-enter), and the result is the member of that value."""

        def method(self, other):
            cls = type(self)
            if type(other) is cls:
                value = op(self.value, other.value)
            elif type(other) is int:
                value = op(self.value, other)
            elif isinstance(other, int):
                value = op(self.value, int(other))
            else:
                return NotImplemented
            found = cls._value2member_map_.get(value)
            return found if found is not None else cls(value)

        method.__name__ = method.__qualname__ = name
        return method

    class IntFlag(int, Enum):
        """Base of a set of bit flags: members are ints; any int is a value (KEEP)."""

        _flag_ = True
        __str__ = int.__repr__
        __format__ = int.__format__

        @classmethod
        def _not_a_value_(cls, value):
            if not cls._member_map_:
                raise TypeError(f"{cls!r} has no members defined")
            if not isinstance(value, int):
                raise ValueError(f"{value!r} is not a valid {cls.__qualname__}")
            # Python 3.11's rules for a value no member has (Flag._missing_, boundary KEEP)
            all_bits, mask = cls._all_bits_, cls._flag_mask_
            if not ~all_bits <= value <= all_bits or value & (all_bits ^ mask):
                if value < 0:
                    value = max(all_bits + 1, 1 << value.bit_length()) + value
            negative = None
            if value < 0:
                negative, value = value, all_bits + 1 + value
            known = value & mask
            if known:
                name = "|".join([m.name for m in cls._members_ if m.value & known])
                unknown = value & ~mask
                if unknown:
                    name += f"|{unknown!r}"
            else:
                name = None
            composite = int.__new__(cls, value)
            state = composite.__dict__
            state["name"], state["value"] = name, value
            # made once: the same value gives the same object, as the real enum's do
            composite = cls._value2member_map_.setdefault(value, composite)
            if negative is not None:
                cls._value2member_map_[negative] = composite
            return composite

        def __repr__(self):
            name = type(self).__name__
            if self.name is None:
                return f"<{name}: {int.__repr__(self.value)}>"
            return f"<{name}.{self.name}: {int.__repr__(self.value)}>"

        __or__ = __ror__ = _bitwise("__or__", _operator.or_)
        __and__ = __rand__ = _bitwise("__and__", _operator.and_)
        __xor__ = __rxor__ = _bitwise("__xor__", _operator.xor)

        def __invert__(self):
            return type(self)(~self.value)

        def __contains__(self, other):
            if not isinstance(other, type(self)):
                raise TypeError(
                    f"unsupported operand type(s) for 'in': {type(other).__qualname__!r}"
                    f" and {type(self).__qualname__!r}"
                )
            return other.value & self.value == other.value

        def __iter__(self):
            value = self.value
            return iter([m for m in type(self)._members_ if m.value & value])

        def __len__(self):
            return self.value.bit_count()
