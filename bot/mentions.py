"""Mentions in text the bridge sends to Pachca on someone else's behalf, made inert.

Pachca reads ``@nickname`` in a message's text as a mention (``@all`` and ``@here`` reach
everyone in the chat) and turns ``<@user_id>`` into one: the people named are notified and, in
a thread, invited into it. Text relayed from the web (messages, names, chat titles) must not
do that. A word joiner (U+2060: invisible, never a line break) right after the ``@`` keeps the
text reading the same to a person, while ``@`` is no longer followed by a name.

Every ``@`` followed by a letter, digit or underscore gets one, whatever comes before it, so
``x@all`` is inert too in case Pachca reads mentions inside words; an e-mail address therefore
carries the invisible character as well. Text already made inert is left as it is.
"""

from __future__ import annotations

import re

WORD_JOINER = "\u2060"
# The at sign and its full-width and small forms, which some text handling folds into it.
_MENTION = re.compile(r"([@\uFF20\uFE6B])(?=\w)")


def neutralise(text: str) -> str:
    """``text`` with every mention made inert (see the module's docstring)."""
    if "@" not in text and "\uff20" not in text and "\ufe6b" not in text:
        return text  # the common case, without running the expression
    return _MENTION.sub(r"\1" + WORD_JOINER, text)
