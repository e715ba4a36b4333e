"""How the bot words a wait (bridge/forum/waiting.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from bridge.forum.waiting import describe_wait, reminder_text

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("seconds", "words"),
    [
        (0, "0 s"),
        (59, "59 s"),
        (60, "1 min"),
        (3599, "59 min"),
        (3600, "1 h"),
        (4 * 3600 + 12 * 60 + 5, "4 h 12 min"),
        (86_400, "1 d"),
        (2 * 86_400 + 3 * 3600 + 59, "2 d 3 h"),
    ],
)
def test_describe_wait(seconds: int, words: str) -> None:
    assert describe_wait(seconds) == words


def test_the_reminder_names_the_student_the_subject_the_wait_and_the_link() -> None:
    row = {
        "student_name": "Sam",
        "subject_name": "Mathematics",
        "title": "Sam - Mathematics",
        "since": NOW - timedelta(hours=5, minutes=3),
    }
    text = reminder_text(row, NOW, "https://app.pachca.com/chats/9")
    assert text == (
        'Waiting for your answer: Sam (Mathematics) has waited 5 h 3 min in "Sam - Mathematics".'
        "\nhttps://app.pachca.com/chats/9"
    )
    assert not text.startswith("/")  # never read back as a command
    assert "not open yet" in reminder_text(row, NOW, None)
