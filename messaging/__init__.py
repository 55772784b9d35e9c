"""What every Baton process shares, in three rooms and two modules.

* ``messaging.transport``: the broker: connection, publish and consume, the wire codec and
  decoding, poison counting, dead-letter marks, the frame-coalescing patch, and the in-memory
  stub broker with the same interface.
* ``messaging.trust``: signatures on every message and sealing of sensitive fields at rest.
* ``messaging.observability``: logging, the health server, trace context, OpenTelemetry.
* ``messaging.settings``: every process's configuration from the environment.
* ``messaging.errors``: the errors all processes share.

Nothing is imported here, so ``messaging.errors`` can be imported (by the pure core) without
loading the broker client.
"""
