"""struct_io.format_codes splits a struct format as the regular expression it replaced
did (kept here as the oracle), on every generated layout and on any text."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from macminidump import linux_abi_packed
from macminidump.elf import packed
from macminidump.struct_io import format_codes

CODES = r"\d*[a-zA-Z?]"


def codes_by_regex(fmt: str) -> list[str]:
    return re.findall(CODES, fmt[1:])


LAYOUTS = {
    f"{module.__name__}.{name}": value
    for module in (linux_abi_packed, packed)
    for name, value in vars(module).items()
    if name.endswith("_FORMAT") and isinstance(value, str)
}


@pytest.mark.parametrize("name", sorted(LAYOUTS))
def test_every_generated_layout_splits_as_the_regex_split_it(name: str) -> None:
    assert format_codes(LAYOUTS[name]) == codes_by_regex(LAYOUTS[name])


formats = st.lists(
    st.sampled_from(["<", ">", "=", "!", "@", "Q", "I", "16s", "4x", "?", "2", " ", "h", "0s"]),
    max_size=12,
).map("".join)


#: digits of other scripts (a regex's \d takes ٣, not ²) and letters outside ASCII
odd_digits = st.text(alphabet="0123456789sQ? \t\u0663\u00b2é_", max_size=20)


@given(formats | st.text(max_size=20) | odd_digits)
def test_any_text_splits_as_the_regex_split_it(fmt: str) -> None:
    assert format_codes(fmt) == codes_by_regex(fmt)
