"""Every alert and recording rule selects targets that both deployments' Prometheus produce.

docker-compose names its jobs statically (deploy/prometheus/prometheus.yml); Kubernetes
discovers pods and relabels them (deploy/k8s/prometheus/prometheus.yml). A rule selecting
job="participants" that only compose produces is an alert that can never fire in k8s, so each
rule file present (baton.yml, and any generated one such as slo.yml) is checked against both.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.prom_relabel import matches, pod_targets, relabel, selectors, targets_of

ROOT = Path(__file__).resolve().parents[2]
RULES = sorted((ROOT / "deploy/prometheus/rules").glob("*.yml"))
COMPOSE_CONFIG = ROOT / "deploy/prometheus/prometheus.yml"
K8S_CONFIG = ROOT / "deploy/k8s/prometheus/prometheus.yml"
WORKLOADS = {"Deployment", "StatefulSet", "DaemonSet", "Job"}

# Pods we do not ship but expect in the cluster: a RabbitMQ Cluster Operator node (its
# documented labels and container port names).
EXTERNAL_PODS: list[dict[str, Any]] = [
    {"metadata": {"name": "rabbitmq-server",
                  "labels": {"app.kubernetes.io/component": "rabbitmq",
                             "app.kubernetes.io/name": "rabbitmq",
                             "app.kubernetes.io/part-of": "rabbitmq"}},
     "spec": {"containers": [{"name": "rabbitmq", "ports": [
         {"name": "amqp", "containerPort": 5672}, {"name": "management", "containerPort": 15672},
         {"name": "prometheus", "containerPort": 15692}]}]}},
]  # fmt: skip


def pod_templates() -> list[dict[str, Any]]:
    """Each workload's pod template in deploy/k8s, named after its workload."""
    templates = []
    for path in sorted((ROOT / "deploy/k8s").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc.get("kind") in WORKLOADS:
                template = doc["spec"]["template"]
                template["metadata"]["name"] = doc["metadata"]["name"]
                templates.append(template)
    return templates


@cache
def _k8s_targets() -> tuple[dict[str, str], ...]:
    pods = [t for pod in (*pod_templates(), *EXTERNAL_PODS) for t in pod_targets(pod, "baton")]
    return tuple(targets_of(yaml.safe_load(K8S_CONFIG.read_text()), pods))


def k8s_targets() -> list[dict[str, str]]:
    return list(_k8s_targets())


@cache
def _compose_targets() -> tuple[dict[str, str], ...]:
    return tuple(targets_of(yaml.safe_load(COMPOSE_CONFIG.read_text())))


def compose_targets() -> list[dict[str, str]]:
    return list(_compose_targets())


def rules() -> list[tuple[str, dict[str, Any]]]:
    """(file:name, rule) for every alert and recording rule of every rule file present."""
    found = []
    for path in RULES:
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                found.append((f"{path.name}:{rule.get('alert') or rule.get('record')}", rule))
    return found


def jobs_selected(matchers: list[tuple[str, str, str]], targets: list[dict[str, str]]) -> set[str]:
    job_matchers = [m for m in matchers if m[0] == "job"]
    return {t["job"] for t in targets if all(matches(m, t) for m in job_matchers)}


@pytest.mark.parametrize(("name", "rule"), rules(), ids=[name for name, _ in rules()])
def test_every_job_a_rule_selects_exists_in_both_deployments(
    name: str, rule: dict[str, Any]
) -> None:
    compose, k8s = compose_targets(), k8s_targets()
    for metric, matchers in selectors(str(rule["expr"])):
        if not any(label == "job" for label, _, _ in matchers):
            continue
        in_compose, in_k8s = jobs_selected(matchers, compose), jobs_selected(matchers, k8s)
        assert in_compose, f"{name}: {metric}{matchers} selects no docker-compose job"
        assert in_compose == in_k8s, f"{name}: compose jobs {in_compose}, k8s jobs {in_k8s}"


@pytest.mark.parametrize(("name", "rule"), rules(), ids=[name for name, _ in rules()])
def test_labels_an_up_alert_names_exist_on_its_targets(name: str, rule: dict[str, Any]) -> None:
    """`up` carries only target labels: the ones its annotations print must be there."""
    found = selectors(str(rule["expr"]))
    if "alert" not in rule or not found or any(metric != "up" for metric, _ in found):
        return
    named = set(re.findall(r"\$labels\.(\w+)", yaml.safe_dump(rule.get("annotations", {}))))
    for deployment, targets in (("compose", compose_targets()), ("k8s", k8s_targets())):
        for _, matchers in found:
            selected = [t for t in targets if all(matches(m, t) for m in matchers)]
            assert selected, f"{name}: no {deployment} target is selected"
            for target in selected:
                assert named <= set(target), (
                    f"{name}: {deployment} target lacks {named - set(target)}"
                )


def test_the_rules_select_the_process_jobs() -> None:
    """The parser sees the alerts this file exists for (it is not vacuously green)."""
    values = {v for _, rule in rules() for _, ms in selectors(str(rule["expr"])) for k, _, v in ms
              if k == "job"}  # fmt: skip
    assert {"orchestrator", "participants"} <= values


def test_k8s_jobs_and_labels_match_compose() -> None:
    k8s = k8s_targets()
    by_job = {job: [t for t in k8s if t["job"] == job] for job in {t["job"] for t in k8s}}
    assert set(by_job) == {t["job"] for t in compose_targets()}
    assert len(by_job["orchestrator"]) == 1  # per pod template; replicas multiply it
    assert sorted(t["participant"] for t in by_job["participants"]) == sorted(
        t["participant"] for t in compose_targets() if t["job"] == "participants"
    )
    assert all(t["instance"].endswith("-0") for t in k8s), "instance is the pod's name"


def test_every_pod_with_a_metrics_port_is_scraped_once() -> None:
    """A metrics port without baton.io/job is a process no alert watches."""
    config = yaml.safe_load(K8S_CONFIG.read_text())
    for pod in pod_templates():
        has_metrics = any(p.get("name") == "metrics" for c in pod["spec"]["containers"]
                          for p in c.get("ports", []))  # fmt: skip
        scraped = targets_of(config, pod_targets(pod, "baton"))
        assert len(scraped) == (1 if has_metrics else 0), pod["metadata"]["name"]
        annotations = pod["metadata"].get("annotations") or {}
        assert "prometheus.io/scrape" not in annotations, "a second, generic job would scrape it"


def test_relabel_follows_prometheus_semantics() -> None:
    labels = {"a": "x", "b": "y"}
    assert relabel(labels, [{"source_labels": ["a"], "regex": "x", "action": "keep"}]) == labels
    assert relabel(labels, [{"source_labels": ["a"], "regex": "", "action": "keep"}]) is None
    assert relabel(labels, [{"source_labels": ["a"], "regex": "x.", "action": "keep"}]) is None
    joined = relabel(
        labels, [{"source_labels": ["a", "b"], "regex": "x;(.+)", "target_label": "c"}]
    )
    assert joined == {**labels, "c": "y"}
    emptied = relabel(labels, [{"source_labels": ["missing"], "target_label": "a"}])
    assert emptied == {"b": "y"}  # an empty result removes the label
    unmatched = relabel(labels, [{"source_labels": ["a"], "regex": "z", "target_label": "b"}])
    assert unmatched == labels
    with pytest.raises(NotImplementedError):
        relabel(labels, [{"action": "hashmod", "modulus": 2, "target_label": "h"}])
