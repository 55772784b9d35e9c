"""Prometheus's target relabeling and PromQL label matchers, replayed in Python.

Debian's Prometheus is built without Kubernetes service discovery, so no real Prometheus here
can load deploy/k8s/prometheus/prometheus.yml; the scrape tests replay its relabel_configs on
the pod templates instead. Only what our configs use is implemented (replace, keep, drop,
labelmap), with Prometheus's semantics: fully anchored regexes, ``;``-joined source labels,
an empty result removing the label, ``__``-labels dropped after relabeling and ``instance``
defaulting to ``__address__``. Anything else raises, so a new action cannot pass unchecked.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["Matcher", "matches", "pod_targets", "relabel", "selectors", "targets_of"]

Labels = dict[str, str]
Matcher = tuple[str, str, str]  # (label, operator, value)


def _sanitize(name: str) -> str:
    return re.sub(r"[^a-zA-Z0-9_]", "_", name)


def _expand(template: str, match: re.Match[str]) -> str:
    """Go's regexp Expand for ``$1`` / ``${1}`` / ``${name}``."""

    def group(m: re.Match[str]) -> str:
        key = m.group(1) or m.group(2)
        try:
            value = match.group(int(key) if key.isdigit() else key)
        except IndexError:  # no such group: Go expands it to ""
            return ""
        return value or ""

    return re.sub(r"\$\{(\w+)\}|\$(\w+)", group, template)


def relabel(labels: Mapping[str, str], rules: Iterable[Mapping[str, Any]]) -> Labels | None:
    """``labels`` after ``rules``, or None when a rule drops the target."""
    out = dict(labels)
    for rule in rules:
        action = rule.get("action", "replace")
        regex = re.compile(f"^(?:{rule.get('regex', '(.*)')})$")
        value = rule.get("separator", ";").join(
            out.get(s, "") for s in rule.get("source_labels", [])
        )
        if action == "keep" and not regex.match(value):
            return None
        if action == "drop" and regex.match(value):
            return None
        if action == "replace":
            match = regex.match(value)
            if match:
                result = _expand(str(rule.get("replacement", "$1")), match)
                out.pop(rule["target_label"], None)
                if result:
                    out[rule["target_label"]] = result
        elif action == "labelmap":
            for name, v in list(out.items()):
                match = regex.match(name)
                if match:
                    out[_expand(str(rule.get("replacement", "$1")), match)] = v
        elif action not in {"keep", "drop"}:
            raise NotImplementedError(
                f"relabel action {action!r}: teach tests/support/prom_relabel.py"
            )
    return out


def _finish(labels: Labels) -> Labels:
    """What Prometheus keeps of a target: instance defaults to the address; no ``__`` labels."""
    labels.setdefault("instance", labels.get("__address__", ""))
    return {k: v for k, v in labels.items() if not k.startswith("__")}


def pod_targets(pod: Mapping[str, Any], namespace: str) -> list[Labels]:
    """The discovered labels of a pod template, one target per container port (role: pod)."""
    meta = pod.get("metadata", {})
    base: Labels = {"__meta_kubernetes_namespace": namespace,
                    "__meta_kubernetes_pod_name": f"{meta.get('name', 'pod')}-0"}  # fmt: skip
    for kind in ("label", "annotation"):
        for key, value in (meta.get(f"{kind}s") or {}).items():
            base[f"__meta_kubernetes_pod_{kind}_{_sanitize(key)}"] = str(value)
            base[f"__meta_kubernetes_pod_{kind}present_{_sanitize(key)}"] = "true"
    targets = []
    for container in pod.get("spec", {}).get("containers", []):
        for port in container.get("ports", []):
            number = str(port["containerPort"])
            targets.append({**base, "__address__": f"10.0.0.1:{number}",
                            "__meta_kubernetes_pod_container_name": container["name"],
                            "__meta_kubernetes_pod_container_port_name": port.get("name", ""),
                            "__meta_kubernetes_pod_container_port_number": number})  # fmt: skip
    return targets


def targets_of(config: Mapping[str, Any], pods: Iterable[Labels] = ()) -> list[Labels]:
    """Every target's final labels: static and DNS targets, and ``pods`` for Kubernetes jobs."""
    pods = list(pods)
    found = []
    for job in config["scrape_configs"]:
        discovered: list[Labels] = []
        for static in job.get("static_configs", []):
            discovered += [
                {**static.get("labels", {}), "__address__": t} for t in static["targets"]
            ]
        for dns in job.get("dns_sd_configs", []):
            discovered += [{"__address__": f"{n}:{dns['port']}"} for n in dns["names"]]
        if job.get("kubernetes_sd_configs"):
            assert all(sd["role"] == "pod" for sd in job["kubernetes_sd_configs"]), "role: pod only"
            discovered += pods
        for labels in discovered:
            kept = relabel({"job": job["job_name"], **labels}, job.get("relabel_configs", []))
            if kept is not None:
                found.append(_finish(kept))
    return found


_SELECTOR = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)?\s*\{([^{}]*)\}")
_MATCHER = re.compile(
    r"""([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*("(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')"""
)


def selectors(expr: str) -> list[tuple[str, list[Matcher]]]:
    """(metric name, matchers) of every ``name{...}`` selector in a PromQL expression."""
    found = []
    for metric, body in _SELECTOR.findall(expr):
        matchers = [(label, op, value[1:-1]) for label, op, value in _MATCHER.findall(body)]
        found.append((metric, matchers))
    return found


def matches(matcher: Matcher, labels: Mapping[str, str]) -> bool:
    """Whether a target's labels satisfy one PromQL matcher (a missing label reads as "")."""
    label, op, value = matcher
    actual = labels.get(label, "")
    if op in {"=", "!="}:
        return (actual == value) == (op == "=")
    return bool(re.fullmatch(value, actual)) == (op == "=~")
