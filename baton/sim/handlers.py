"""The real payment handlers, made slow or stubborn on purpose, and watched while they run.

Each participant gets the handlers ``participants.payments.services.SERVICES`` builds; this
module only wraps them: some calls take longer than the step's timeout (before or after the
real work, so the effect lands late or its answer does), and the compensations the plan
names refuse a number of times (a refusal by design: only such a saga may end ``failed``).
While a handler runs its *subject* is held (the forward effect id, which a compensation
shares): two calls holding one subject at once break the protocol's lease. After every
call of a participant that moves money the books are checked at once.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import Callable
from typing import Any

from baton.sim.trace import Trace
from baton_sdk import Handler, Handlers, MessageContext
from contracts.base import Reply
from messaging.errors import StepRejected

MONEY_MOVERS = frozenset({"payment", "transaction"})
STEP_TIMEOUT_S = 5.0  # the payment definition's timeout_s for every step


class Conduct:
    """How handlers misbehave in one seed, and what was seen while they ran."""

    def __init__(
        self,
        rng: random.Random,
        slow: float,
        refusals: dict[tuple[str, str], int],
        trace: Trace,
        tally: Counter[str],
        after_money_moved: Callable[[], None],
        violation: Callable[[str], None],
    ) -> None:
        self._rng = rng
        self._slow = slow
        self.refusals = dict(refusals)  # (saga id, step) -> refusals left
        self._refused: set[str] = set()  # saga ids whose compensation was refused
        self._trace = trace
        self._tally = tally
        self._after_money_moved = after_money_moved
        self._violation = violation
        self.running: Counter[str] = Counter()  # subject -> calls running now
        self.parallel = 0  # calls that ran alongside another call of their subject

    @property
    def refusing(self) -> set[str]:
        """Sagas whose compensation was refused and would still be: only these may fail.

        A saga whose planned refusals ran out (fewer than its compensation's attempts) must
        have compensated after them."""
        left = {saga for (saga, _), n in self.refusals.items() if n > 0}
        return self._refused & left

    def wrap(self, participant: str, handlers: Handlers) -> Handlers:
        wrapped = Handlers(handlers)  # the wrapped one's models: commands, replies, contracts
        for kind in handlers:
            route = handlers.route(kind)
            assert route is not None
            wrapped.register(route.command, self._wrap(participant, route.handler))
        return wrapped

    def _wrap(self, participant: str, handler: Handler) -> Handler:
        async def call(command: Any, ctx: MessageContext) -> Reply:
            subject = ctx.effect_id if ctx.phase == "forward" else ctx.compensates
            undoes = f" undoes e:{ctx.compensates[:6]}" if ctx.compensates else ""
            what = f"{participant} {ctx.step}/{ctx.phase} {self._trace.saga(ctx.saga_id)} " \
                   f"a{ctx.attempt} e:{ctx.effect_id[:6]}{undoes}"  # fmt: skip
            self._refuse_by_design(ctx, what)
            if self.running[subject]:
                self.parallel += 1
                self._violation(f"parallel_run: {what} ran beside another call of its subject")
            self.running[subject] += 1
            try:
                return await self._run(handler, command, ctx, what)
            finally:
                self.running[subject] -= 1
                if participant in MONEY_MOVERS:
                    self._after_money_moved()

        return call

    def _refuse_by_design(self, ctx: MessageContext, what: str) -> None:
        key = (ctx.saga_id, ctx.step)
        if ctx.phase != "compensate" or not self.refusals.get(key):
            return
        self.refusals[key] -= 1
        self._refused.add(ctx.saga_id)
        self._tally["refused_compensation"] += 1
        self._trace(f"handler {what}: refused by design")
        raise StepRejected("sim_refused", "a compensation refused on purpose")

    async def _run(self, handler: Handler, command: Any, ctx: MessageContext, what: str) -> Reply:
        slow = self._slow and self._rng.random() < self._slow
        delay = self._rng.uniform(1.05, 3.0) * STEP_TIMEOUT_S if slow else 0.0
        late_effect = self._rng.random() < 0.5
        if slow:
            self._tally["slow_handler"] += 1
            where = "before" if late_effect else "after"
            self._trace(f"handler {what}: slow, {delay:.2f}s {where} the effect")
        if slow and late_effect:
            await asyncio.sleep(delay)
        self._trace(f"handler {what}: runs")
        try:
            reply = await handler(command, ctx)
        except StepRejected as exc:
            self._trace(f"handler {what}: refused {exc.reason}")
            raise
        except Exception as exc:
            self._trace(f"handler {what}: raised {type(exc).__name__}")
            raise
        self._trace(f"handler {what}: {type(reply).__name__} {reply.model_dump_json()[:120]}")
        if slow and not late_effect:
            await asyncio.sleep(delay)
        return reply
