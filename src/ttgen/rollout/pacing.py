"""When the agents of a start burst begin: the agents of trials whose container came up early
wait, so that the containers still starting get the host's cores, and begin spread over the
model's latency just before the burst's last container is up.

Why: when a job asks for many containers at once (a job's first N trials, N well over the
engine's start slots), the starts take the host's CPU for minutes (~0.3 s of a 2-core host per
container with Docker). A trial whose container is up early used to begin its turns at once:
each command it runs costs the engine and the host CPU that the starts still queued needed, so
the last container came up late (1,000 trials at 30 s a turn on 2 cores: 1.37 x the engine's
own time for the starts), and the job ends no earlier than the last container's time plus a
whole agent run. An early trial has time to spare (it would finish long before the last one),
so holding it back costs the job nothing, as long as the held agents do not all begin at once:
their first commands would then arrive together after one model call and queue behind each
other (a wave that repeats every turn).

So, per host (one pacer per sandbox backend: one per job here, one per Ray node):

* A burst is on while more trials are starting (begun, agent not yet set up) than BURST_FACTOR
  (4) x the engine's start slots; it ends when none is starting. Below that the start phase is
  short and holding costs more than it saves: 64 Terminus 2 trials at 1 s a turn with 32 slots
  on 2 cores took 34.6 s paced against 32.5 s unpaced (3 runs each): the held agents then finish
  together and their verifiers and container removals queue behind each other, while the
  starts came up no sooner (1,000 trials at 30 s: 795-802 s paced, 887 s unpaced).
* During a burst, a trial whose agent waits on a model (`model_info()` is not None: Terminus 2,
  not the oracle) waits in `ready()` after its agent is set up, in the order the trials became
  ready; the first such trial is never held (its first model call measures the latency).
* The time left until the last container is up is estimated from the trials still starting and
  the rate the last ones came up; once it is under the model's typical latency W (the running
  average of this process's model calls, ttgen.llm.typical_latency), the held trials are let go
  one by one, evenly over the time left, so that their first commands (one model call later)
  arrive evenly over the first W seconds after the last start.
* When no trial is starting any more, every held trial goes at once. A trial is never held
  longer than the burst, so a wrong estimate costs at most what holding until the end costs.

The time held is not part of any phase of the trial (its agent timeout counts from when it
goes); trial.log notes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable

# The held agents go over at least this share of the burst's length (and at least the model's
# latency): trials that finish together would queue their verifiers and removals.
SPREAD = 0.35
# A burst is more trials starting than this many times the engine's start slots.
BURST_FACTOR = 4


class AgentPacer:
    """See the module docstring. `slots`: the engine's start slots (a burst is more trials
    starting than BURST_FACTOR times that); `latency`: the model's typical latency in seconds,
    None while unknown; `clock`: seconds, monotonic."""

    def __init__(
        self,
        slots: int,
        latency: Callable[[], float | None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        spread: float = SPREAD,
    ) -> None:
        if latency is None:
            from ttgen.llm import typical_latency as latency
        self.slots = max(1, slots)
        self.spread = spread
        self._latency = latency
        self._clock = clock
        self.starting = 0  # trials between begin() and ready()/abandon()
        self.burst = False
        self._burst_began = 0.0
        self._probe_out = False  # this burst's first model-paced trial went without waiting
        self._ups = 0  # this burst's trials that are ready
        self._last_up = 0.0  # when the last of them was
        self._held: deque[asyncio.Future[None]] = deque()
        self._changed: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self.held_total = 0  # trials held so far (for logs and tests)

    # -- what trials tell the pacer ---------------------------------------------------------

    def begin(self) -> None:
        """A trial begins to start its container."""
        self.starting += 1
        if self.starting > self.slots * BURST_FACTOR and not self.burst:
            self.burst = True
            self._burst_began = self._clock()
        self._poke()

    def abandon(self) -> None:
        """A trial that began never became ready (its start or set-up failed, or it was
        cancelled)."""
        self.starting = max(0, self.starting - 1)
        if self.starting == 0:
            self._end_burst()
        self._poke()

    async def ready(self, paced: bool) -> float:
        """A trial's container is up and its agent set up; returns once its agent may begin,
        with the seconds it waited. `paced`: its agent waits on a model (only those are held)."""
        self.starting = max(0, self.starting - 1)
        if self.burst:
            self._ups += 1
            self._last_up = self._clock()
        if self.starting == 0:
            self._end_burst()
        if not (paced and self.burst):
            self._poke()
            return 0.0
        if not self._probe_out:
            self._probe_out = True
            self._poke()
            return 0.0
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._held.append(waiter)
        self.held_total += 1
        t0 = self._clock()
        self._ensure_task()
        self._poke()
        try:
            await waiter
        except asyncio.CancelledError:
            if not waiter.done():
                waiter.cancel()
            raise
        return self._clock() - t0

    # -- the schedule -----------------------------------------------------------------------

    def left(self) -> float | None:
        """Estimated seconds until the last trial now starting is up (None: no rate yet)."""
        if self.starting == 0:
            return 0.0
        if not self._ups:
            return None
        # the rate over the burst so far (the first starts, all begun together, finish
        # together: a rate over the last few would be far too high early on)
        span = self._last_up - self._burst_began
        if span <= 0:
            return None
        return self.starting * span / self._ups

    def _end_burst(self) -> None:
        self.burst = False
        self._probe_out = False
        self._ups = 0
        while self._held:
            self._release()

    def _release(self) -> None:
        waiter = self._held.popleft()
        if not waiter.done():
            waiter.set_result(None)

    def _poke(self) -> None:
        if self._changed is not None:
            self._changed.set()

    def _ensure_task(self) -> None:
        if self._task is None or self._task.done():
            self._changed = asyncio.Event()
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        assert self._changed is not None
        last_release = self._clock()
        # a burst's end (_end_burst) empties the queue, so the loop ends with it
        while self._held:
            if self._held[0].done():  # cancelled while held
                self._held.popleft()
                continue
            wait = 1.0
            latency = self._latency()
            left = self.left()
            if (
                latency is not None
                and left is not None
                and left < max(latency, self.spread * (self._clock() - self._burst_began + left))
            ):
                # let the held trials go evenly over the time left (the trials still starting
                # join the queue when they are ready, so they count in the spacing)
                gap = left / (len(self._held) + self.starting)
                due = last_release + gap
                now = self._clock()
                if now >= due:
                    self._release()
                    last_release = now
                    continue
                wait = min(wait, due - now)
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), wait)

    async def close(self) -> None:
        """Let every held trial go and stop the schedule."""
        self._end_burst()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
