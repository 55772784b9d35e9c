"""The clustered deployment (docker-compose.cluster.yml, deploy/cluster/, deploy/k8s-cluster/)
is coherent: every Baton process is pointed at every node of both clusters with the clustered
settings, and the broker's and Redis's files are the renderings of the same credentials.

A node list that misses a node, a URL with a password other than the user's, or a definitions
file whose queue arguments differ from what ``baton declare`` declares is a cluster that half
works; none needs a Docker engine or a Kubernetes cluster to be found.
"""

from __future__ import annotations

import base64
import json
import shutil
import urllib.parse
from pathlib import Path
from typing import Any

import pytest
import yaml

from baton.access import acl_lines, rabbit_password_matches, redis_users
from baton.definitions import cluster_acl_lines, credentials, read_env_file, render_definitions
from contracts.topology import Topology
from tests.conftest import PARTICIPANTS
from tests.unit.test_deploy_validate import compose_command, run

ROOT = Path(__file__).resolve().parents[2]
CLUSTER = ROOT / "deploy/cluster"
K8S = ROOT / "deploy/k8s-cluster"
COMPOSE_FILES = ["docker-compose.yml", "docker-compose.cluster.yml"]
BATON = ["declare", "orchestrator", *PARTICIPANTS]
SERVICE_SECRETS = ["admin", "orchestrator", *PARTICIPANTS]
RABBIT_NODES = ["rabbit-0", "rabbit-1", "rabbit-2"]
REDIS_NODES = [f"redis-{n}" for n in range(6)]
DELIVERY_LIMIT = 1000


def hosts(url: str) -> list[str]:
    """The ``host:port`` list of a multi-host URL (``user:pass@h1:p,h2:p/…``)."""
    netloc = urllib.parse.urlsplit(url).netloc
    return netloc.rsplit("@", 1)[-1].split(",")


def user_and_password(url: str) -> tuple[str, str]:
    netloc = urllib.parse.urlsplit(url).netloc
    user, password = netloc.rsplit("@", 1)[0].split(":", 1)
    return urllib.parse.unquote(user), urllib.parse.unquote(password)


def check_clustered_env(
    env: dict[str, str], where: str, rabbit: list[str], redis: list[str]
) -> None:
    """A Baton process's clustered settings: every node of each cluster, quorum, WAIT."""
    assert hosts(env["BATON_RABBIT__URL"]) == [f"{h}:5672" for h in rabbit], where
    assert env["BATON_RABBIT__URL"].startswith("amqp://"), where
    assert env["BATON_REDIS__URL"].startswith("redis+cluster://"), where
    assert hosts(env["BATON_REDIS__URL"]) == [f"{h}:6379" for h in redis], where
    assert env["BATON_RABBIT__QUEUE_TYPE"] == "quorum", where
    assert int(env["BATON_RABBIT__DELIVERY_LIMIT"]) == DELIVERY_LIMIT, where
    assert int(env["BATON_REDIS__DURABLE_REPLICAS"]) >= 1, where
    assert int(env["BATON_REDIS__DURABLE_TIMEOUT_MS"]) > 0, where


# -- docker compose --------------------------------------------------------------------------


def test_the_cluster_override_renders_and_points_every_process_at_every_node() -> None:
    args = [*compose_command(), *(a for f in COMPOSE_FILES for a in ("-f", f)), "config"]
    services = yaml.safe_load(run(args, ROOT))["services"]
    names = set(services)
    for service in services.values():
        names.update(((service.get("networks") or {}).get("default") or {}).get("aliases", []))
    assert set(RABBIT_NODES) | set(REDIS_NODES) <= names, "every node answers by its URL name"
    for name in BATON:  # env_file values are folded into environment by `config`
        check_clustered_env(services[name]["environment"], name, RABBIT_NODES, REDIS_NODES)
        assert services[name]["depends_on"]["redis-cluster-init"] == {
            "condition": "service_completed_successfully"
        }
    for node, service in zip(RABBIT_NODES, ["rabbitmq", "rabbit-1", "rabbit-2"], strict=True):
        assert services[service]["environment"]["RABBITMQ_NODENAME"] == f"rabbit@{node}"
        assert services[service]["hostname"] == node
    init = services["redis-cluster-init"]
    assert init["command"] == REDIS_NODES


def test_the_override_reads_the_base_credentials_then_the_cluster_urls() -> None:
    """Without compose: the raw file's env_file order (the later file wins) and passwords."""
    services = yaml.safe_load((ROOT / "docker-compose.cluster.yml").read_text())["services"]
    base_broker, base_redis = credentials(ROOT / "deploy/secrets")
    for name in BATON:
        secret = "admin" if name == "declare" else name
        assert services[name]["env_file"] == [
            f"deploy/secrets/{secret}.env",
            f"deploy/cluster/secrets/{secret}.env",
        ]
        env = read_env_file(CLUSTER / "secrets" / f"{secret}.env")
        rabbit_user, rabbit_password = user_and_password(env["BATON_RABBIT__URL"])
        redis_user, redis_password = user_and_password(env["BATON_REDIS__URL"])
        assert base_broker[rabbit_user] == rabbit_password, f"{secret}: broker password"
        assert base_redis[redis_user] == redis_password, f"{secret}: redis password"


# -- the rendered broker and Redis files -----------------------------------------------------


def test_the_cluster_definitions_are_the_quorum_rendering_with_a_delivery_limit() -> None:
    broker, _ = credentials(ROOT / "deploy/secrets")
    committed = json.loads((CLUSTER / "rabbitmq/definitions.json").read_text())
    expected = render_definitions(
        Topology(), PARTICIPANTS, broker, queue_type="quorum", delivery_limit=DELIVERY_LIMIT
    )
    for user in committed["users"]:  # salted: verify instead of comparing
        assert rabbit_password_matches(user.pop("password_hash"), broker[user["name"]])
    for user in expected["users"]:
        user.pop("password_hash")
    assert committed == expected, "run the `baton access --render` of docker-compose.cluster.yml"
    queues = committed["queues"]
    assert {q["arguments"]["x-queue-type"] for q in queues} == {"quorum"}
    dead_letter_queues = {b["destination"] for b in committed["bindings"]
                          if b["source"] == Topology().dead_letter_exchange}  # fmt: skip
    for queue in queues:
        limit = queue["arguments"].get("x-delivery-limit")
        assert limit == (None if queue["name"] in dead_letter_queues else DELIVERY_LIMIT), queue


def test_the_cluster_acl_adds_slot_map_reads_and_the_clusters_own_users() -> None:
    _, redis = credentials(ROOT / "deploy/secrets")
    base = acl_lines(redis_users(Topology(), PARTICIPANTS), redis)
    lines = (CLUSTER / "redis/users.acl").read_text().splitlines()
    assert lines == cluster_acl_lines(base, CLUSTER / "secrets/redis.env")
    assert lines[0].startswith("user default off")
    assert all("+cluster|slots" in line for line in lines[1 : len(base)])
    conf = (CLUSTER / "redis/redis.conf").read_text()
    assert "masteruser baton-replication" in conf
    assert "cluster-enabled yes" in conf


def settings(path: Path) -> list[str]:
    """A configuration file's setting lines, comments and blank lines dropped."""
    return [s for s in (raw.strip() for raw in path.read_text().splitlines())
            if s and not s.startswith("#")]  # fmt: skip


def test_each_rabbitmq_node_config_is_the_base_one_plus_clustering() -> None:
    base = settings(ROOT / "deploy/rabbitmq/rabbitmq.conf")
    pods = [f"rabbitmq-{n}.rabbitmq-nodes.baton.svc.cluster.local" for n in range(3)]
    for path, nodes in ((CLUSTER / "rabbitmq/rabbitmq.conf", RABBIT_NODES),
                        (K8S / "rabbitmq.conf", pods)):  # fmt: skip
        lines = settings(path)
        assert lines[: len(base)] == base, path
        found = [line.split(" = ")[1] for line in lines if ".classic_config.nodes." in line]
        assert found == [f"rabbit@{n}" for n in nodes], path
        assert "cluster_partition_handling = pause_minority" in lines, path


def test_kubernetes_runs_the_same_redis_settings_and_init_script() -> None:
    assert settings(K8S / "redis.conf") == settings(CLUSTER / "redis/redis.conf")
    assert (K8S / "cluster-init.sh").read_text() == (CLUSTER / "redis/cluster-init.sh").read_text()
    assert (K8S / "enabled_plugins").read_text() == (
        ROOT / "deploy/rabbitmq/enabled_plugins"
    ).read_text()


# -- kustomize -------------------------------------------------------------------------------


def render_overlay(tmp_path: Path) -> list[dict[str, Any]]:
    """deploy/k8s-cluster over deploy/k8s, the .env.example templates in the secrets' place and
    deploy/cluster's renderings standing in for the deployment's own definitions and ACL."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl not installed: deploy/k8s-cluster was not rendered")
    for source in (ROOT / "deploy/k8s", K8S):
        shutil.copytree(source, tmp_path / source.name, ignore=shutil.ignore_patterns("*.env"))
    for example in tmp_path.glob("*/secrets/*.env.example"):
        shutil.copy(example, example.with_suffix(""))
    shutil.copy(CLUSTER / "rabbitmq/definitions.json", tmp_path / "k8s-cluster/secrets")
    shutil.copy(CLUSTER / "redis/users.acl", tmp_path / "k8s-cluster/secrets")
    rendered = run([kubectl, "kustomize", str(tmp_path / "k8s-cluster")], ROOT)
    return [d for d in yaml.safe_load_all(rendered) if d]


def test_the_overlay_renders_with_clustered_settings_and_every_reference_resolves(
    tmp_path: Path,
) -> None:
    docs = render_overlay(tmp_path)
    by_name = {(d["kind"], d["metadata"]["name"]): d for d in docs}
    secrets = {name: {k: base64.b64decode(v).decode() for k, v in d["data"].items()}
               for (kind, name), d in by_name.items() if kind == "Secret"}  # fmt: skip
    config = by_name[("ConfigMap", "baton")]["data"]
    rabbit = [f"rabbitmq-{n}.rabbitmq-nodes" for n in range(3)]
    redis = [f"redis-{n}.redis-nodes" for n in range(6)]
    for service in SERVICE_SECRETS:
        check_clustered_env({**config, **secrets[f"baton-{service}"]}, service, rabbit, redis)
        assert "BATON_SIGNING__PRIVATE_KEY" in secrets[f"baton-{service}"] or service == "admin"
    assert by_name[("StatefulSet", "rabbitmq")]["spec"]["replicas"] == 3
    assert by_name[("StatefulSet", "redis")]["spec"]["replicas"] == 6
    for kind, name in (("Service", "rabbitmq-nodes"), ("Service", "redis-nodes")):
        assert by_name[(kind, name)]["spec"]["clusterIP"] == "None"
    for doc in docs:
        if doc["kind"] in {"StatefulSet", "Job", "Deployment"}:
            check_references(doc, by_name, secrets)


def check_references(
    workload: dict[str, Any], by_name: dict[Any, Any], secrets: dict[str, Any]
) -> None:
    """Every Secret key, ConfigMap and projected source a pod reads exists in the rendering."""
    spec = workload["spec"]["template"]["spec"]
    for container in spec["containers"]:
        for entry in container.get("env", []):
            ref = entry.get("valueFrom", {}).get("secretKeyRef")
            if ref and not ref.get("optional"):
                assert ref["key"] in secrets.get(ref["name"], {}), (workload["metadata"], ref)
    for volume in spec.get("volumes", []):
        sources = volume.get("projected", {}).get("sources", [volume])
        for source in sources:
            if "configMap" in source:
                assert ("ConfigMap", source["configMap"]["name"]) in by_name, volume
            if "secret" in source:
                assert source["secret"]["name"] in secrets, volume
