"""What became of one webhook event: its outcome (counted in ``bridge_webhook_events``) and
the reason logged with it. Shared by the relay (bridge/pachca/relay.py) and the handlers of
each kind of event it dispatches to."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from bridge.feed import events as ev


class Outcome(StrEnum):
    ACCEPTED = "accepted"  # a forum change (a message, a reaction) or a Pachca change queued
    COMMAND = "command"  # a bot command answered
    DUPLICATE = "duplicate"  # seen before; nothing changed
    DROPPED = "dropped"  # deliberately not relayed (the reason is logged)
    IGNORED = "ignored"  # an event the bridge does not act on (unknown types...)
    INVALID = "invalid"  # a known event with fields the bridge cannot use


@dataclass(frozen=True, slots=True)
class Handled:
    outcome: Outcome
    reason: str | None = None
    events: tuple[ev.FeedEvent, ...] = ()


def dropped(reason: str) -> Handled:
    return Handled(Outcome.DROPPED, reason)
