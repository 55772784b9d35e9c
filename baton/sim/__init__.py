"""A deterministic simulation of Baton (design.md §12, style.md 6.3).

The real engine, SDK and payment handlers run on an in-memory broker
(``messaging.transport.stub_broker``), an in-memory Redis that runs Baton's own Lua scripts
(fakeredis with Lua) and a virtual clock, under a storm drawn from one seed: slow handlers,
concurrent duplicates, lost, duplicated and reordered messages, crashes of any process at
any moment, outages of the store and the broker of any length, balances around the amount,
refused compensations, operator actions, malformed messages. After every money-moving call
and at the end of every run the books are judged; a failing seed replays alone, identically.

    baton sim --seeds 200 --json        # many seeds over every core; JSON totals last
    baton sim --seed 42 --trace         # one seed alone, with its whole event trace

Modules: ``plan`` (what a seed does), ``world`` (the processes), ``storm`` (the faults,
the client, the operator), ``network`` (broker knobs), ``handlers`` (slow and stubborn
handlers), ``hosts`` (simulated processes), ``clock`` (virtual time), ``determinism``
(pinned time and ids), ``invariants``, ``run`` (one seed), ``report`` (many seeds).
"""

from baton.sim.run import SeedResult, SimConfig, run_seed

__all__ = ["SeedResult", "SimConfig", "run_seed"]
