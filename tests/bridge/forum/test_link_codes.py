"""The shape of /link codes (bridge/forum/link_codes.py): enough randomness, easy to type."""

from __future__ import annotations

import re

import pytest

from bridge.forum import link_codes
from store.models import LinkCode

SHOWN = re.compile(r"[0-9A-HJKMNP-TV-Z]{4}-[0-9A-HJKMNP-TV-Z]{4}-[0-9A-HJKMNP-TV-Z]{4}")


def test_a_code_carries_at_least_50_random_bits_and_fits_its_column() -> None:
    assert len(set(link_codes.ALPHABET)) == len(link_codes.ALPHABET) == 32
    assert link_codes.BITS >= 50
    code = link_codes.new_code()
    assert SHOWN.fullmatch(code), code
    assert len(code) <= LinkCode.__table__.c.code.type.length


def test_codes_are_drawn_from_the_whole_alphabet_and_do_not_repeat() -> None:
    codes = [link_codes.new_code() for _ in range(2000)]
    assert len(set(codes)) == len(codes)
    # 24,000 characters: every one of the 32 appears (a narrower draw would have fewer bits).
    assert set("".join(codes).replace("-", "")) == set(link_codes.ALPHABET)


@pytest.mark.parametrize(
    "typed",
    ["7KQ2-M9XD-HT4B", "7kq2-m9xd-ht4b", "7KQ2M9XDHT4B", "7kq2m9xdht4b", "7KQ2 M9XD–HT4B"],
)
def test_case_and_grouping_do_not_matter(typed: str) -> None:
    assert link_codes.normalise(typed) == "7KQ2-M9XD-HT4B"


def test_letters_that_look_like_digits_are_read_as_the_digits() -> None:
    assert link_codes.normalise("OOII-LLOO-1234") == "0011-1100-1234"
    assert link_codes.normalise("oill-0000-0000") == "0111-0000-0000"


@pytest.mark.parametrize(
    "typed", ["", "7KQ2-M9XD-HT4", "7KQ2-M9XD-HT4BX", "7KQ2-M9XD-HT4U", "1A2B3C4D", "x" * 500]
)
def test_what_cannot_be_a_code_is_none(typed: str) -> None:
    assert link_codes.normalise(typed) is None
