"""Slash commands users send the bot in Pachca: `/help`, `/link CODE`, `/threads`,
`/waiting`."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

CommandName = Literal["help", "link", "threads", "waiting"]

_NAMES: dict[str, CommandName] = {
    "help": "help",
    "link": "link",
    "threads": "threads",
    "waiting": "waiting",
}
# "/name" or "/name@botname", nothing glued on: "/path/to/file" or "/link:x" is prose, not a
# command, so the bot does not answer every message that happens to start with a slash.
_COMMAND = re.compile(r"/([A-Za-z][A-Za-z0-9_]*)(?:@[A-Za-z0-9_.\-]+)?")


@dataclass(frozen=True, slots=True)
class Command:
    name: CommandName
    arg: str | None  # first word after the command; None when there is none


@dataclass(frozen=True, slots=True)
class UnknownCommand:
    """A slash command the bot does not have; the caller answers with the /help text."""

    name: str  # lower-cased, without the slash


def parse_command(content: str) -> Command | UnknownCommand | None:
    """Read a command from a message's text, or None when the message is not a command.

    Names are case-insensitive and may carry an `@botname` suffix, which is ignored: the bot
    only receives messages in its own direct chats and the threads it runs.
    """
    # str.split() without a separator also strips, and treats any Unicode whitespace
    # (newlines, non-breaking spaces) as a separator.
    words = content.split(maxsplit=2)
    if not words:
        return None
    match = _COMMAND.fullmatch(words[0])
    if match is None:
        return None
    name = match.group(1).lower()
    known = _NAMES.get(name)
    if known is None:
        return UnknownCommand(name)
    return Command(known, words[1] if len(words) > 1 else None)
