"""The worker's timing rules without a clock: backoff, pacing under Pachca's rates, and the
client rebuilt when the config changes."""

from __future__ import annotations

import pytest

from bridge.config import LiveConfig, parse_config
from bridge.pachca.clients import PachcaClients, not_ready_reason
from bridge.pachca.pacing import Pacer, WaitTooLong
from bridge.pachca.worker import OutboxTuning


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def test_backoff_doubles_up_to_the_cap() -> None:
    tuning = OutboxTuning(backoff_base_s=1, backoff_max_s=10, jitter=0.5, rand=lambda: 0.0)
    assert [tuning.backoff(n) for n in range(1, 7)] == [1, 2, 4, 8, 10, 10]


def test_backoff_jitter_only_shortens_within_bounds() -> None:
    low = OutboxTuning(backoff_base_s=4, jitter=0.5, rand=lambda: 1.0)
    assert low.backoff(1) == 2.0
    assert OutboxTuning(backoff_base_s=4, jitter=0.5, rand=lambda: 0.5).backoff(1) == 3.0


def test_a_run_may_outlast_an_open_thread_of_three_timed_out_calls() -> None:
    tuning = OutboxTuning(max_pacing_wait_s=2)
    assert tuning.time_limit(10) > 3 * (10 + 2)


async def test_message_calls_to_one_chat_are_spaced_by_its_rate() -> None:
    clock = FakeClock()
    pacer = Pacer(clock, clock.sleep)
    for _ in range(3):
        await pacer.acquire("thread:1", per_chat=4, overall=100, max_wait=10)
    assert clock.sleeps == [0.25, 0.25]


async def test_other_chats_only_share_the_global_rate() -> None:
    clock = FakeClock()
    pacer = Pacer(clock, clock.sleep)
    await pacer.acquire("thread:1", per_chat=4, overall=100, max_wait=10)
    await pacer.acquire("thread:2", per_chat=4, overall=100, max_wait=10)
    await pacer.acquire(None, per_chat=4, overall=100, max_wait=10)
    assert clock.sleeps == pytest.approx([0.01, 0.01])


async def test_a_429_pauses_the_chat_for_retry_after() -> None:
    clock = FakeClock()
    pacer = Pacer(clock, clock.sleep)
    pacer.pause("thread:1", 1.5)
    await pacer.acquire("thread:2", per_chat=4, overall=100, max_wait=10)  # not paused
    await pacer.acquire("thread:1", per_chat=4, overall=100, max_wait=10)
    assert sum(clock.sleeps) == pytest.approx(1.5)


async def test_a_wait_too_long_is_refused_without_taking_the_slot() -> None:
    clock = FakeClock()
    pacer = Pacer(clock, clock.sleep)
    pacer.pause(None, 30)
    with pytest.raises(WaitTooLong) as refused:
        await pacer.acquire("thread:1", per_chat=4, overall=100, max_wait=2)
    assert refused.value.wait == pytest.approx(30)
    clock.now += 30
    await pacer.acquire("thread:1", per_chat=4, overall=100, max_wait=2)
    assert clock.sleeps == []


def live(**pachca: object) -> LiveConfig:
    return LiveConfig(parse_config({"pachca": pachca}))


async def test_no_client_while_pachca_is_disabled_or_has_no_token() -> None:
    assert PachcaClients(live(enabled=False, token="t")).current() is None
    assert PachcaClients(live(enabled=True)).current() is None
    assert "pachca.token" in (not_ready_reason(live(enabled=True).current.pachca) or "")


async def test_the_client_is_rebuilt_when_a_reload_changes_the_token() -> None:
    config = live(enabled=True, token="first-token", api_url="http://127.0.0.1:1/api")
    clients = PachcaClients(config)
    first = clients.current()
    assert first is not None
    assert clients.current() is first
    # An unrelated change keeps the client.
    config.current = config.current.model_copy(
        update={"limits": config.current.limits.model_copy(update={"posts_per_minute": 5})}
    )
    assert clients.current() is first

    pachca = config.current.pachca.model_copy(
        update={"token": parse_config({"pachca": {"token": "second-token"}}).pachca.token}
    )
    config.current = config.current.model_copy(update={"pachca": pachca})
    second = clients.current()
    assert second is not None and second is not first
    await clients.aclose()
