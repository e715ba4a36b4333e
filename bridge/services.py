"""The services, built together over one Runtime."""

from __future__ import annotations

from dataclasses import dataclass, field

from bridge.feed.history import History
from bridge.forum.chats import ChatReader
from bridge.forum.enrollments import Enrollments
from bridge.forum.messages import MessageWriter
from bridge.forum.users import Users
from bridge.runtime import Runtime


@dataclass
class Services:
    rt: Runtime
    users: Users = field(init=False)
    enrollments: Enrollments = field(init=False)
    chats: ChatReader = field(init=False)
    messages: MessageWriter = field(init=False)
    feed_log: History = field(init=False)

    def __post_init__(self) -> None:
        self.users = Users(self.rt)
        self.enrollments = Enrollments(self.rt)
        self.chats = ChatReader(self.rt)
        self.messages = MessageWriter(self.rt)
        self.feed_log = History(self.rt)
