"""The list endpoints run a bounded number of SQL statements, whatever the data: at
most 3 per list request, authentication included (docs/api.md).

Statements are counted where the store hands them to the driver (``Database.on_statement``,
through the conftest's `count_queries`): every statement of the request, on SQLite and
PostgreSQL alike. Transaction control (BEGIN/COMMIT/SAVEPOINT) is not a statement of the
request.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import pytest
from aiohttp.test_utils import TestClient

from bridge.auth import Principals
from bridge.forum.access_cache import AccessCache
from handlers.keys import SERVICES
from tests.files_kit import upload
from tests.world import World

MAX_STATEMENTS = 3
CONTROL = ("BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE", "END")


def is_request_statement(sql: str) -> bool:
    text = sql.strip().rstrip(";").strip()
    return bool(text) and not text.upper().startswith(CONTROL)


class Statements:
    """Every statement the app sends while counting."""

    def __init__(self, counter: Any, principals: Principals, access: AccessCache):
        self.counter = counter  # the conftest's count_queries counter
        self.principals = principals
        self.access = access
        self.counting = False

    def start(self, *, keep_chats: bool = False) -> None:
        # Counted with the user the token names read from the database (the worst case: it
        # is cached for a few seconds otherwise), so that counts do not depend on timing. So
        # is the chat's access for a post, unless ``keep_chats`` (the copy a post before left).
        self.principals.clear()
        if not keep_chats:
            self.access.clear()
        self.counter.reset()
        self.counting = True

    async def stop(self) -> list[str]:
        self.counting = False
        seen = list(self.counter.statements)
        # The hook sees statements only: transaction control never reaches it.
        assert all(is_request_statement(s) for s in seen), seen
        return seen


@pytest.fixture
async def statements(count_queries: Callable[[], Any], client: TestClient) -> Statements:
    services = client.server.app[SERVICES]
    return Statements(count_queries(), services.principals, services.access)


async def count(statements: Statements, request: Any) -> tuple[int, list[str]]:
    statements.start()
    resp = await request
    assert resp.status == 200, await resp.text()
    await resp.read()
    seen = await statements.stop()
    return len(seen), seen


# --- what message objects carry besides their text ---------------------------------------------


@dataclass(frozen=True)
class Extra:
    """Something message objects carry besides their text, loaded by the list statements
    themselves. Every message posted below gets it: ``before`` gives fields of the new
    message's body (a file's ``file_ids``, say), ``after`` acts on the posted message
    (reactions); ``shown`` finds it in a message object of an answer."""

    shown: Callable[[dict[str, Any]], bool]
    before: Callable[[World, int, str], Awaitable[dict[str, Any]]] | None = None
    after: Callable[[World, dict[str, Any], str, str], Awaitable[None]] | None = None


REACTIONS_ON_EACH = ("👍", "❤️", "👀")


async def react_to(world: World, message: dict[str, Any], author: str, reader: str) -> None:
    """Several emoji from both participants on the message."""
    for user in (author, reader):
        for emoji in REACTIONS_ON_EACH:
            resp = await world.client.put(
                f"/api/v1/messages/{message['id']}/reactions/{quote(emoji, safe='')}",
                headers=world.auth(user),
            )
            assert resp.status == 204, await resp.text()


REACTIONS = Extra(lambda m: len(m["reactions"]) == len(REACTIONS_ON_EACH), after=react_to)


async def one_file(world: World, chat_id: int, author: str) -> dict[str, Any]:
    """Upload a file for the message about to be posted."""
    file = await upload(world, author, chat_id)
    return {"file_ids": [file["id"]]}


FILES = Extra(lambda m: len(m["files"]) == 1, before=one_file)
# Each counted answer must show each of these.
EXTRAS: list[Extra] = [REACTIONS, FILES]


async def posted(world: World, author: str, reader: str, chat_id: int, text: str) -> int:
    fields: dict[str, Any] = {}
    for extra in EXTRAS:
        if extra.before is not None:
            fields |= await extra.before(world, chat_id, author)
    message = await world.post(author, chat_id, text, **fields)
    for extra in EXTRAS:
        if extra.after is not None:
            await extra.after(world, message, author, reader)
    return int(message["id"])


def shows_every_extra(messages: list[dict[str, Any]]) -> bool:
    return all(any(extra.shown(m) for m in messages) for extra in EXTRAS)


async def count_answer(statements: Statements, request: Any) -> tuple[Any, int, list[str]]:
    """The answer's body, and the statements it took."""
    statements.start()
    resp = await request
    assert resp.status == 200, await resp.text()
    body = await resp.json()
    seen = await statements.stop()
    return body, len(seen), seen


async def populate_chats(world: World, n_enrollments: int) -> tuple[str, str, str]:
    """A student with a tutor and n enrollments, each with its own teacher: 2n chats, every
    one with messages from both sides and read marks of both participants."""
    tutor = await world.user("tutor")
    student = await world.user("student", tutor_id=tutor)
    first_teacher = ""
    for i in range(n_enrollments):
        teacher = await world.user("teacher")
        first_teacher = first_teacher or teacher
        enrolled = await world.enroll(student, teacher)
        for chat in enrolled.body["chats"]:
            partner = teacher if chat["type"] == "forum_subject" else tutor
            mine = await posted(world, student, partner, chat["id"], f"question {i}")
            theirs = await posted(world, partner, student, chat["id"], f"answer {i}")
            for user, message_id in ((partner, mine), (student, theirs)):
                resp = await world.client.post(
                    f"/api/v1/chats/{chat['id']}/read",
                    json={"message_id": message_id},
                    headers=world.auth(user),
                )
                assert resp.status == 204
    return student, first_teacher, tutor


async def populate_messages(world: World, n_messages: int) -> tuple[str, str, int]:
    student = await world.user("student")
    teacher = await world.user("teacher")
    chat_id = (await world.enroll(student, teacher)).subject_chat["id"]
    last: dict[str, int] = {}
    for i in range(n_messages):
        author = student if i % 2 == 0 else teacher
        reader = teacher if author == student else student
        last[author] = await posted(world, author, reader, chat_id, f"message {i}")
        if i % 5 == 4:  # read marks at various points
            resp = await world.client.post(
                f"/api/v1/chats/{chat_id}/read",
                json={"message_id": last[author]},
                headers=world.auth(reader),
            )
            assert resp.status == 204
    return student, teacher, chat_id


@pytest.mark.parametrize("viewer", ["student", "teacher", "tutor", "admin", "parent"])
async def test_chat_list_statements_do_not_grow_with_chats(
    client: TestClient, world: World, statements: Statements, viewer: str
) -> None:
    counts = {}
    for size in (1, 50):
        student, teacher, tutor = await populate_chats(world, size)
        user = {
            "student": student,
            "teacher": teacher,
            "tutor": tutor,
            "admin": await world.user("admin"),
            "parent": await world.user("parent", children=[student]),
        }[viewer]
        resp, n, seen = await count_answer(
            statements, client.get("/api/v1/chats", headers=world.auth(user))
        )
        assert n <= MAX_STATEMENTS, seen
        counts[size] = n
        chats = resp["chats"]
        assert not chats or shows_every_extra([c["last_message"] for c in chats])
    assert counts[1] == counts[50], counts

    # The list was really the big one: the admin sees every chat made above.
    admin = await world.user("admin")
    resp = await client.get("/api/v1/chats", headers=world.auth(admin))
    assert len((await resp.json())["chats"]) == 2 * (1 + 50)


@pytest.mark.parametrize(
    "params",
    [{}, {"limit": "200"}, {"limit": "10", "offset": "20"}, {"before_id": "LAST", "limit": "20"}],
    ids=["default", "limit_200", "offset", "before_id"],
)
@pytest.mark.parametrize("viewer", ["student", "admin"])
async def test_message_list_statements_do_not_grow_with_messages(
    client: TestClient, world: World, statements: Statements, viewer: str, params: dict[str, str]
) -> None:
    counts = {}
    for size in (1, 50):
        student, _teacher, chat_id = await populate_messages(world, size)
        user = student if viewer == "student" else await world.user("admin")
        query = dict(params)
        if query.get("before_id") == "LAST":
            query["before_id"] = str(10**9)
        page, n, seen = await count_answer(
            statements,
            client.get(f"/api/v1/chats/{chat_id}/messages", params=query, headers=world.auth(user)),
        )
        assert n <= MAX_STATEMENTS, seen
        counts[size] = n
        assert not page["messages"] or shows_every_extra(page["messages"]), page["messages"]
    assert counts[1] == counts[50], counts


@pytest.mark.parametrize("params", [{}, {"offset": "500"}], ids=["empty_chat", "past_the_end"])
async def test_an_empty_page_is_just_as_cheap(
    client: TestClient, world: World, statements: Statements, params: dict[str, str]
) -> None:
    student, _teacher, chat_id = await populate_messages(world, 0 if not params else 3)
    n, seen = await count(
        statements,
        client.get(f"/api/v1/chats/{chat_id}/messages", params=params, headers=world.auth(student)),
    )
    assert n <= MAX_STATEMENTS, seen


# A durable web post with a client_id, token to receipt: the user the token names (cached for
# a few seconds otherwise), the chat's access, and the write. A repeated client_id is found by
# the constraint, so a post makes no look-up first. On PostgreSQL the write - the message, the
# chat's last message, the wait it starts or ends, the outbox job and the event - is one
# statement (store/new_messages.py), in a transaction that adds BEGIN and COMMIT: 5 round
# trips in all (10 before the statement, and before the look-up went). SQLite runs
# in-process: there a statement costs no round trip, and the writes stay five statements (six
# for a teacher's answer, which reads the wait it ends and ends it).
POST_STATEMENTS = {
    ("postgresql", "student"): 3,
    ("postgresql", "teacher"): 3,
    ("sqlite", "student"): 7,
    ("sqlite", "teacher"): 8,
}
# The chat's access (its type, activity and participants) is read only when the instance
# keeps no recent copy of it (bridge/forum/access_cache.py: for 5 s, dropped at once on every
# instance when it changes): a second post in the same chat takes one statement less - 2
# statements on PostgreSQL (the user, cached too, and the write), 4 round trips with BEGIN and
# COMMIT.


@pytest.mark.parametrize("author", ["student", "teacher"])
async def test_a_post_takes_few_statements(
    client: TestClient, world: World, statements: Statements, database: Any, author: str
) -> None:
    # The chat's access stays kept between the two counted posts, however slow the machine.
    client.server.app[SERVICES].access.ttl_s = 3600
    student = await world.user("student")
    teacher = await world.user("teacher")
    chat_id = (await world.enroll(student, teacher)).subject_chat["id"]
    await world.post(student, chat_id, "a question: the teacher's post ends its wait")
    who = student if author == "student" else teacher
    statements.start()
    resp = await client.post(
        f"/api/v1/chats/{chat_id}/messages",
        json={"content": "counted", "client_id": "c-1"},
        headers=world.auth(who),
    )
    assert resp.status == 201, await resp.text()
    seen = await statements.stop()
    bound = POST_STATEMENTS[(database.dialect.name, author)]
    assert len(seen) <= bound, seen

    # The next post in the chat, with its access kept from the one before (the student asks
    # again first, so that a teacher's answer ends a wait again): the one statement less is
    # the read of the chat and its participants.
    await world.post(student, chat_id, "another question")
    statements.start(keep_chats=True)
    again = await client.post(
        f"/api/v1/chats/{chat_id}/messages",
        json={"content": "counted again", "client_id": "c-2"},
        headers=world.auth(who),
    )
    assert again.status == 201, await again.text()
    kept = await statements.stop()
    assert len(kept) <= bound - 1, kept
    assert [s for s in seen if "participants" in s], seen
    assert not [s for s in kept if "participants" in s], kept

    # The chat's last message is the new one (the waits and jobs the same statement writes:
    # tests/bridge/forum/test_waiting.py, tests/e2e).
    sent = (await again.json())["message"]
    chats = await client.get("/api/v1/chats", headers=world.auth(who))
    chat = next(c for c in (await chats.json())["chats"] if c["id"] == chat_id)
    assert chat["last_message"]["id"] == sent["id"]
