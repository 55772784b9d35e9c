"""The fixtures' lookup order for RabbitMQ and Redis (tests/support/service_lookup.py).

On this machine the local servers answer, so the testcontainers path never runs live: its
decision and its classes are checked here instead.
"""

from __future__ import annotations

import inspect
import itertools

import pytest

from tests.support import service_lookup
from tests.support.service_lookup import (
    RABBIT,
    REDIS,
    Service,
    ServiceMissing,
    Source,
    choose,
    container_classes,
    describe,
    locate,
)


@pytest.mark.parametrize(
    ("url_set", "local", "docker"), list(itertools.product([True, False], repeat=3))
)
def test_choose_takes_url_then_local_then_container(
    url_set: bool, local: bool, docker: bool
) -> None:
    expected = (
        Source.ENV if url_set else Source.LOCAL if local else
        Source.CONTAINER if docker else Source.MISSING
    )  # fmt: skip
    assert choose(url_set=url_set, local_answers=local, docker_reachable=docker) is expected


def fake(answers: bool) -> Service:
    return Service("redis", "BATON_TEST_LOOKUP_URL", "redis://127.0.0.1:1/0", 1, "redis:7",
                   lambda _port: answers)  # fmt: skip


def no_probe() -> bool:
    raise AssertionError("probed although an earlier step already decided")


def test_a_set_url_wins_without_probing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BATON_TEST_LOOKUP_URL", "redis://elsewhere:6390/0")
    monkeypatch.setattr(service_lookup, "docker_reachable", no_probe)
    with locate(fake(answers=False)) as (source, url):
        assert (source, url) == (Source.ENV, "redis://elsewhere:6390/0")


def test_a_local_server_wins_over_docker(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BATON_TEST_LOOKUP_URL", raising=False)
    monkeypatch.setattr(service_lookup, "docker_reachable", no_probe)
    with locate(fake(answers=True)) as (source, url):
        assert (source, url) == (Source.LOCAL, "redis://127.0.0.1:1/0")


def test_nothing_anywhere_fails_saying_what_to_do(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BATON_TEST_LOOKUP_URL", raising=False)
    monkeypatch.setattr(service_lookup, "docker_reachable", lambda: False)
    with (
        pytest.raises(ServiceMissing, match=r"make services.*BATON_TEST_LOOKUP_URL"),
        locate(fake(answers=False)),
    ):
        pass


def test_the_summary_names_the_path_but_no_password() -> None:
    line = describe(RABBIT, Source.CONTAINER, "amqp://guest:s3cret@localhost:32771/")
    assert line == "rabbitmq in a testcontainers container (localhost:32771/)"
    assert "s3cret" not in describe(REDIS, Source.ENV, "redis://u:s3cret@h:6379/0")


def test_testcontainers_modules_and_classes_exist() -> None:
    from testcontainers.core.container import DockerContainer

    classes = container_classes()
    assert set(classes) == {RABBIT.name, REDIS.name}
    assert all(issubclass(cls, DockerContainer) for cls in classes.values())
    for cls in classes.values():  # what _container() calls (constructing one needs Docker)
        assert "image" in inspect.signature(cls).parameters
        assert callable(cls.get_container_host_ip)
        assert callable(cls.get_exposed_port)
    assert {"username", "password"} <= set(inspect.signature(classes[RABBIT.name]).parameters)
