"""The orchestrator, in two rooms.

* ``orchestrator.core``: pure saga logic. Definitions, the expression language, state,
  effects and the engine's ``decide``. No I/O: ``tests/unit/test_layers.py`` holds that it
  imports nothing from the runtime, the broker, Redis, metrics or logging.
* ``orchestrator.runtime``: the adapters that run the core: the runner (one replica), the
  Redis store with its Lua scripts, the outbox relay, the deadline loops and the latency
  mechanisms (script batching, done marks, wake times, the state cache).
"""
