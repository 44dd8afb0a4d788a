"""The Outbox: email work off the request, bounded, and never lost without a log line."""

from __future__ import annotations

import asyncio
import logging

import pytest

from tally.config import Settings
from tally.mail import Mail, Mailer, Outbox


def errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]


async def test_jobs_run_in_order_off_the_caller() -> None:
    """post() returns at once; the jobs run after, one at a time, in order."""
    outbox = Outbox(Mailer(Settings()))
    done: list[int] = []

    async def job(n: int) -> None:
        await asyncio.sleep(0.01)
        done.append(n)

    for n in range(3):
        assert outbox.post(lambda n=n: job(n), f"job {n}")  # type: ignore[misc]
    assert done == []
    await outbox.idle()
    assert done == [0, 1, 2]
    await outbox.close()


async def test_a_failing_job_is_logged_and_the_next_ones_run(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A job that raises is logged (ERROR, with what it was) and the queue goes on."""
    outbox = Outbox(Mailer(Settings()))
    done: list[str] = []

    async def broken() -> None:
        raise RuntimeError("boom")

    async def fine() -> None:
        done.append("fine")

    outbox.post(broken, "the broken job")
    outbox.post(fine, "the fine job")
    await outbox.idle()
    assert done == ["fine"]
    assert any("could not do the broken job" in e for e in errors(caplog))
    await outbox.close()


async def test_a_full_queue_refuses_and_logs(caplog: pytest.LogCaptureFixture) -> None:
    """Beyond its bound the queue refuses a job, and says so in the log."""
    outbox = Outbox(Mailer(Settings()), size=2)
    gate = asyncio.Event()

    async def wait() -> None:
        await gate.wait()

    assert outbox.post(wait, "first")
    await asyncio.sleep(0)  # the worker takes the first: two more fit
    assert outbox.post(wait, "second")
    assert outbox.post(wait, "third")
    assert not outbox.send(Mail("ann@example.com", "Hello", "body"))
    assert any("mail queue is full" in e and "ann@example.com" in e for e in errors(caplog))
    gate.set()
    await outbox.idle()
    await outbox.close()


async def test_jobs_left_at_shutdown_are_logged(caplog: pytest.LogCaptureFixture) -> None:
    """close() waits (bounded) for the queue, then stops and logs what was left."""
    outbox = Outbox(Mailer(Settings()))
    never = asyncio.Event()

    async def stuck() -> None:
        await never.wait()

    outbox.post(stuck, "stuck")
    outbox.post(stuck, "waiting")
    await outbox.close(drain=0.05)
    assert any("1 email jobs not done" in e for e in errors(caplog))
