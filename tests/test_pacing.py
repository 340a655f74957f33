"""The agent pacer (ttgen.rollout.pacing): during a start burst, the agents of trials that are
ready early wait, then go spread over the time left until the last container is up. Driven here
by hand on a real event loop and clock (short times); test_scale.py runs it in a real job."""

from __future__ import annotations

import asyncio
import time

from ttgen.rollout.pacing import AgentPacer


async def _burst(pacer: AgentPacer, n: int, every: float, paced=lambda i: True):
    """`n` trials begin at once; trial i is ready at i * `every` s. Returns, per trial, when it
    was ready and when its agent went (seconds from the start)."""
    for _ in range(n):
        pacer.begin()
    t0 = time.monotonic()
    ready_at: list[float] = [0.0] * n
    went_at: list[float] = [0.0] * n

    async def trial(i: int) -> None:
        await asyncio.sleep(i * every)
        ready_at[i] = time.monotonic() - t0
        await pacer.ready(paced(i))
        went_at[i] = time.monotonic() - t0

    await asyncio.wait_for(asyncio.gather(*(trial(i) for i in range(n))), 30)
    await pacer.close()
    return ready_at, went_at


async def test_early_agents_wait_and_go_spread_over_the_last_starts():
    """12 trials, 2 start slots (a burst: more than 4 x 2 starting), one ready every 0.1 s, the model answering in 0.4 s: the first
    agent goes at once (its call measures the model), the next ones wait until about 0.4 s
    before the last container is up, then go one by one in the order they were ready, spread
    over that time (not all at once), the last one as soon as it is ready."""
    pacer = AgentPacer(2, latency=lambda: 0.4, spread=0.0)
    ready, went = await _burst(pacer, 12, 0.1)
    last_up = ready[-1]
    assert went[0] - ready[0] < 0.05
    held = list(range(1, 11))
    # nobody goes before the window of 0.4 s (and a margin for the rate estimate) before the end
    assert min(went[i] for i in held) >= last_up - 0.4 - 0.15, (ready, went)
    # in the order they were ready, and spread: never more than 3 in the same 50 ms
    order = sorted(held, key=lambda i: went[i])
    assert order == held, (ready, went)
    times = sorted(went[i] for i in held)
    assert max(sum(1 for u in times if t <= u < t + 0.05) for t in times) <= 3, times
    assert times[-1] - times[0] >= 0.15, times
    # and every agent has gone once the last container is up
    assert max(went) <= last_up + 0.1, (ready, went)
    assert pacer.held_total >= 8


async def test_agents_that_wait_on_no_model_and_small_jobs_are_never_held():
    """The oracle's trials (no model) go at once even in a burst; so does every trial of a
    job that starts no more containers than the engine's slots."""
    pacer = AgentPacer(1, latency=lambda: 5.0)
    ready, went = await _burst(pacer, 6, 0.05, paced=lambda i: False)
    assert all(w - r < 0.05 for r, w in zip(ready, went, strict=True)), (ready, went)
    assert pacer.held_total == 0

    pacer = AgentPacer(2, latency=lambda: 5.0)  # 8 starting: not more than 4 x 2
    ready, went = await _burst(pacer, 8, 0.05)
    assert all(w - r < 0.05 for r, w in zip(ready, went, strict=True)), (ready, went)
    assert pacer.held_total == 0


async def test_with_the_models_latency_unknown_agents_wait_for_the_last_start_at_most():
    """Before any model call has answered, the held agents wait until the burst is over, and
    then all go: never longer."""
    pacer = AgentPacer(1, latency=lambda: None)
    ready, went = await _burst(pacer, 6, 0.1)
    assert went[0] - ready[0] < 0.05
    assert all(abs(went[i] - ready[-1]) < 0.05 for i in range(1, 6)), (ready, went)


async def test_a_held_trial_cancelled_or_a_trial_that_never_starts_does_not_stall_the_others():
    """A held trial that is cancelled leaves the queue; a trial whose start fails (abandon)
    counts as no longer starting: the burst ends when the others are ready."""
    pacer = AgentPacer(1, latency=lambda: None)
    for _ in range(6):
        pacer.begin()
    assert await pacer.ready(True) == 0.0  # the first goes
    second = asyncio.ensure_future(pacer.ready(True))
    third = asyncio.ensure_future(pacer.ready(True))
    await asyncio.sleep(0.1)
    assert not second.done() and not third.done()
    second.cancel()
    await asyncio.sleep(0.05)
    assert not third.done()
    for _ in range(3):  # the other trials' starts failed: no trial is starting any more
        pacer.abandon()
    held = await asyncio.wait_for(third, 2)
    assert held >= 0.1
    assert not pacer.burst
    await pacer.close()
