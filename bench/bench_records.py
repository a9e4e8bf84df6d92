"""The records' cost beside attrs', in one process: building the classes, making instances.

    python bench/bench_records.py [--rounds 15]

Every record class of the package (``generate_records.record_classes()``) is declared
again from its own fields and built twice a round, in a shuffled order: by records, as at
import (its ``__init__`` from the generated table), and by attrs (the same fields as
``attrs.field``, the same methods, ``attrs.frozen``/``attrs.define``). Then Region,
RegisterSet, Thread and Image, the records made thousands of times, are made (2,000 each
a round, interleaved) by the package's class and by its attrs twin. Median (min–max) of
the rounds. Targets: a class built in ≤ 0.1 ms; each record made no slower than by attrs
(a miss must exceed the noise between rounds). Needs attrs (the test extra).
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
import timeit
from pathlib import Path
from typing import Any

import attrs

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from macminidump import generate_records, records  # noqa: E402
from macminidump.arch import RegKind  # noqa: E402
from macminidump.model import BytesSource, Image, Region, RegisterSet, Thread  # noqa: E402

#: what records puts on a class (the rest of its namespace is the declaration's)
_MADE = {"__init__", "__eq__", "__hash__", "__repr__", "__setattr__", "__delattr__"}
_MADE |= {"__records_fields__", "__dict__", "__weakref__"}


def declare(cls: type, lib: Any) -> type:
    """``cls``'s declaration, built again by ``lib`` (records or attrs)."""
    fields = cls.__records_fields__  # type: ignore[attr-defined]
    body: dict[str, Any] = {k: v for k, v in cls.__dict__.items() if k not in _MADE}
    body["__annotations__"] = {f.name: "Any" for f in fields}
    for f in fields:
        options: dict[str, Any] = {}
        if isinstance(f.default, records.Factory):
            options["default"] = lib.Factory(f.default.factory, takes_self=f.default.takes_self)
        elif f.default is not records.NOTHING:  # type: ignore[attr-defined]
            options["default"] = f.default
        eq = f.eq_key if f.eq_key is not None else f.eq
        body[f.name] = lib.field(
            converter=f.converter, eq=eq, hash=f.hash, repr=f.repr, init=f.init, **options
        )
    plain = type(cls.__name__, (), body)
    plain.__qualname__ = cls.__qualname__
    kw_only = cls.__init__.__code__.co_kwonlyargcount > 0  # type: ignore[misc]
    if cls.__hash__ is None:
        return lib.define(kw_only=kw_only)(plain)  # type: ignore[no-any-return]
    return lib.frozen(kw_only=kw_only)(plain)  # type: ignore[no-any-return]


def spread(values: list[float], unit: float, fmt: str = "{:.1f}") -> str:
    v = [x * unit for x in values]
    return f"{fmt.format(statistics.median(v))} ({fmt.format(min(v))}–{fmt.format(max(v))})"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    classes = generate_records.record_classes()
    rng = random.Random(0)

    build: dict[str, list[float]] = {"records": [], "attrs": []}
    for _ in range(args.rounds):
        subjects = [("records", records), ("attrs", attrs)]
        rng.shuffle(subjects)
        for name, lib in subjects:
            started = time.perf_counter()
            for cls in classes:
                declare(cls, lib)
            build[name].append((time.perf_counter() - started) / len(classes))

    data = BytesSource(b"x" * 64)
    gpr = {"rip": 1, "rsp": 2}
    twins = {cls: declare(cls, attrs) for cls in (Region, RegisterSet, Thread, Image)}
    regs = RegisterSet(RegKind.GPR, gpr)

    def makers(of: Any) -> dict[str, Any]:
        return {
            "Region": lambda: of[Region](address=0x1000, data=data, protection=5),
            "RegisterSet": lambda: of[RegisterSet](RegKind.GPR, gpr),
            "Thread": lambda: of[Thread](id=1, regsets=(regs,)),
            "Image": lambda: of[Image](path="/bin/x", load_address=0x400000),
        }

    ours = makers({cls: cls for cls in twins})
    theirs = makers(twins)
    make: dict[str, dict[str, list[float]]] = {k: {"records": [], "attrs": []} for k in ours}
    for _ in range(args.rounds):
        for kind in ours:
            subjects = [("records", ours[kind]), ("attrs", theirs[kind])]
            rng.shuffle(subjects)
            for name, call in subjects:
                make[kind][name].append(timeit.timeit(call, number=2000) / 2000)

    missed = False
    per_class = statistics.median(build["records"])
    print(f"{len(classes)} record classes, {args.rounds} interleaved rounds, median (min–max)")
    print(f"  build a class    records {spread(build['records'], 1e3, '{:.3f}')} ms")
    print(f"                   attrs   {spread(build['attrs'], 1e3, '{:.3f}')} ms")
    print(f"  build a class: {per_class * 1e3:.3f} ms (target ≤ 0.1 ms): ", end="")
    print("met" if per_class <= 1e-4 else "MISSED")
    missed |= per_class > 1e-4
    for kind, samples in make.items():
        ours_ns, theirs_ns = samples["records"], samples["attrs"]
        noise = statistics.pstdev(theirs_ns)
        slower = statistics.median(ours_ns) - statistics.median(theirs_ns) > noise
        print(
            f"  make {kind:12s} records {spread(ours_ns, 1e9, '{:.0f}')} ns, "
            f"attrs {spread(theirs_ns, 1e9, '{:.0f}')} ns: " + ("SLOWER" if slower else "no slower")
        )
        missed |= slower
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
