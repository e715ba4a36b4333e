"""Mentions made inert before text reaches Pachca (bot/mentions.py)."""

from __future__ import annotations

import pytest

from bot.mentions import WORD_JOINER, neutralise

WJ = WORD_JOINER


@pytest.mark.parametrize(
    ("text", "sent"),
    [
        ("@all", f"@{WJ}all"),
        ("hi @here!", f"hi @{WJ}here!"),
        ("ask @someone, or @Иван", f"ask @{WJ}someone, or @{WJ}Иван"),
        ("<@42> look", f"<@{WJ}42> look"),
        ("x@all", f"x@{WJ}all"),  # inside a word too
        ("\uff20all \ufe6ball", f"\uff20{WJ}all \ufe6b{WJ}all"),
        ("@ alone, a trailing @", "@ alone, a trailing @"),
        ("no mention at all", "no mention at all"),
    ],
)
def test_mentions_are_made_inert(text: str, sent: str) -> None:
    assert neutralise(text) == sent


def test_the_text_reads_the_same_and_stays_inert_when_sent_again() -> None:
    text = "Dear @all and @here: meet <@7>"
    once = neutralise(text)
    assert once.replace(WJ, "") == text
    assert neutralise(once) == once
