"""The broker side of every process: connect, declare, publish and consume, encode and decode.

``amqp.Broker`` is the real transport over aio-pika; ``stub_broker.StubBroker`` is an
in-memory one with the same methods (``port.Transport``), for the simulation and for the
runner suite that runs on both.
"""
