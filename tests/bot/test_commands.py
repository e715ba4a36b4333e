import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.commands import Command, UnknownCommand, parse_command


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("/help", Command("help", None)),
        ("/threads", Command("threads", None)),
        ("/link ABC123", Command("link", "ABC123")),
        ("  /link   ABC123  \n", Command("link", "ABC123")),
        ("/LINK abc123", Command("link", "abc123")),  # the name is case-insensitive, the code kept
        ("/Help", Command("help", None)),
        ("/link@bridge_bot ABC123", Command("link", "ABC123")),
        ("/threads@Bridge_Bot", Command("threads", None)),
        ("/waiting", Command("waiting", None)),
        ("/Waiting@bridge_bot", Command("waiting", None)),
        ("/link\nABC123", Command("link", "ABC123")),
        ("/link\u00a0ABC123", Command("link", "ABC123")),  # non-breaking space from a paste
        ("/link ABC123 please, thanks", Command("link", "ABC123")),
        ("/help link", Command("help", "link")),
    ],
)
def test_commands(content, expected):
    assert parse_command(content) == expected


@pytest.mark.parametrize("content", ["/link", "/link   ", "/link@bridge_bot", " /LINK \n"])
def test_link_without_code_has_no_arg(content):
    assert parse_command(content) == Command("link", None)


@pytest.mark.parametrize(
    ("content", "name"),
    [("/foo", "foo"), ("/Start now", "start"), ("/foo@bridge_bot", "foo"), ("/h3lp_me", "h3lp_me")],
)
def test_unknown_command(content, name):
    assert parse_command(content) == UnknownCommand(name)


@pytest.mark.parametrize(
    "content",
    [
        "",
        "   ",
        "hello /help",
        "help",
        "/",
        "/ help",
        "//help",
        "/path/to/file is missing",
        "/link:ABC",
        "/2fa",
        "/help@",
        "\\help",
    ],
)
def test_not_a_command(content):
    assert parse_command(content) is None


def test_results_are_immutable():
    with pytest.raises(AttributeError):
        parse_command("/help").name = "link"  # type: ignore[misc, union-attr]


@given(st.text())
def test_property_any_text_parses_to_a_result_or_none(content):
    result = parse_command(content)
    assert result is None or isinstance(result, Command | UnknownCommand)
    if result is not None:
        assert content.lstrip().startswith("/")
