"""store/batching.py: writes that come together go in one transaction, a unit refused in a
batch fails alone, and units that change one row never share a batch."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Hashable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import pytest

from store.batching import Batcher
from store.errors import Conflict
from store.tx import Tx


@dataclass
class Item:
    key: str
    value: int


@dataclass
class Recorder:
    """A kind of write that records what it was given; a unit of value < 0 is refused."""

    batches: list[list[int]] = field(default_factory=list)  # each many() call's values
    alone: list[int] = field(default_factory=list)  # each one() call's value
    committed: list[list[int]] = field(default_factory=list)  # what each transaction kept
    pending: list[int] = field(default_factory=list)
    gate: asyncio.Event | None = None  # many() waits for it, when set

    def key(self, unit: Item) -> Hashable:
        return unit.key

    async def one(self, tx: Tx, unit: Item) -> int:
        self.alone.append(unit.value)
        if unit.value < 0:
            raise Conflict("refused")
        self.pending.append(unit.value)
        return unit.value * 10

    async def many(self, tx: Tx, units: Sequence[Item]) -> list[int]:
        self.batches.append([u.value for u in units])
        if self.gate is not None:
            await self.gate.wait()
        if any(u.value < 0 for u in units):
            raise Conflict("refused")
        self.pending.extend(u.value for u in units)
        return [u.value * 10 for u in units]

    @asynccontextmanager
    async def write(self) -> AsyncIterator[Tx]:
        self.pending = []
        try:
            yield None  # type: ignore[misc]  # the fake kind never touches its transaction
        except BaseException:
            self.pending = []
            raise
        self.committed.append(self.pending)


@pytest.fixture
def kind() -> Recorder:
    return Recorder()


@pytest.fixture
def batcher(kind: Recorder) -> Batcher[Item, int]:
    return Batcher(kind, kind.write)


async def test_units_submitted_together_are_written_in_one_transaction(
    kind: Recorder, batcher: Batcher[Item, int]
) -> None:
    results = await asyncio.gather(*(batcher.submit(Item(f"chat{i}", i)) for i in range(5)))
    assert results == [0, 10, 20, 30, 40]
    assert kind.batches == [[0, 1, 2, 3, 4]]
    assert kind.committed == [[0, 1, 2, 3, 4]]


async def test_a_lone_unit_is_written_at_once(kind: Recorder, batcher: Batcher[Item, int]):
    assert await batcher.submit(Item("a", 7)) == 70
    assert kind.batches == [[7]]


async def test_units_that_come_while_a_batch_is_written_make_the_next_batch(
    kind: Recorder, batcher: Batcher[Item, int]
) -> None:
    kind.gate = asyncio.Event()
    first = asyncio.create_task(batcher.submit(Item("a", 1)))
    await asyncio.sleep(0.01)  # the first batch is in flight, waiting at the gate
    later = [asyncio.create_task(batcher.submit(Item(k, v))) for k, v in (("b", 2), ("c", 3))]
    await asyncio.sleep(0.01)
    assert kind.batches == [[1]]  # one batch at a time
    kind.gate.set()
    assert await asyncio.gather(first, *later) == [10, 20, 30]
    assert kind.batches == [[1], [2, 3]]


async def test_units_with_one_key_never_share_a_batch_and_keep_their_order(
    kind: Recorder, batcher: Batcher[Item, int]
) -> None:
    items = [Item("a", 1), Item("a", 2), Item("b", 3), Item("a", 4)]
    results = await asyncio.gather(*(batcher.submit(item) for item in items))
    assert results == [10, 20, 30, 40]
    assert kind.batches == [[1, 3], [2], [4]]


async def test_a_refused_unit_fails_alone_and_the_others_are_written(
    kind: Recorder, batcher: Batcher[Item, int]
) -> None:
    items = [Item("a", 1), Item("b", -1), Item("c", 3)]
    results = await asyncio.gather(
        *(batcher.submit(item) for item in items), return_exceptions=True
    )
    assert results[0] == 10 and results[2] == 30
    assert isinstance(results[1], Conflict)
    assert kind.batches == [[1, -1, 3]]  # the batch failed and wrote nothing...
    assert kind.alone == [1, -1, 3]  # ...so each unit went again on its own
    assert kind.committed == [[1], [3]]


async def test_a_lone_refused_unit_gets_its_error_once(
    kind: Recorder, batcher: Batcher[Item, int]
) -> None:
    with pytest.raises(Conflict):
        await batcher.submit(Item("a", -1))
    assert kind.batches == [[-1]] and kind.alone == []


async def test_a_unit_whose_submitter_left_before_its_turn_is_not_written(
    kind: Recorder, batcher: Batcher[Item, int]
) -> None:
    kind.gate = asyncio.Event()
    first = asyncio.create_task(batcher.submit(Item("a", 1)))
    await asyncio.sleep(0.01)
    gone = asyncio.create_task(batcher.submit(Item("b", 2)))
    kept = asyncio.create_task(batcher.submit(Item("c", 3)))
    await asyncio.sleep(0.01)
    gone.cancel()
    kind.gate.set()
    assert await first == 10 and await kept == 30
    assert kind.batches == [[1], [3]]


async def test_drain_waits_for_what_was_submitted(kind: Recorder, batcher: Batcher[Item, int]):
    kind.gate = asyncio.Event()
    tasks = [asyncio.create_task(batcher.submit(Item(k, v))) for k, v in (("a", 1), ("a", 2))]
    await asyncio.sleep(0.01)
    asyncio.get_running_loop().call_later(0.02, kind.gate.set)
    await batcher.drain()
    assert kind.committed == [[1], [2]]
    assert await asyncio.gather(*tasks) == [10, 20]
