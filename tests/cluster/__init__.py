"""The cluster launchers themselves: real RabbitMQ and Redis clusters, nodes killed."""
