"""The deployment files load in the tools that run them: docker compose and kustomize.

Neither needs a cluster or a Docker engine: ``docker-compose config`` and ``kubectl kustomize``
only parse, merge and render. compose is installed from Debian's packages when missing (as
root, like tests/observability/stack.py installs Prometheus); kubectl is not (skipped, saying
so). deploy/k8s refuses to render without the real secrets/<service>.env files, which are not
in git: it is rendered from a copy with the .env.example templates in their place.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy/k8s"


def compose_command() -> list[str]:
    """``docker compose`` (the plugin) or ``docker-compose``, installing Debian's when missing."""
    if shutil.which("docker") and _runs(["docker", "compose", "version"]):
        return ["docker", "compose"]
    if not shutil.which("docker-compose") and os.geteuid() == 0 and shutil.which("apt-get"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        for args in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq",
                     "--no-install-recommends", "docker-compose"]):  # fmt: skip
            subprocess.run(
                args, env=env, capture_output=True, stdin=subprocess.DEVNULL, check=False
            )
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    pytest.skip("no docker compose: not root, so apt-get install docker-compose was not tried")


def _runs(args: list[str]) -> bool:
    return subprocess.run(args, capture_output=True, check=False, timeout=60).returncode == 0


def run(args: list[str], cwd: Path) -> str:
    done = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, f"{' '.join(args)}:\n{done.stderr}"
    return done.stdout


@pytest.mark.parametrize(
    "files",
    [["docker-compose.yml"], ["docker-compose.yml", "tests/services/compose.yml"]],
    ids=["deployment", "test-overlay"],
)
def test_docker_compose_config_validates(files: list[str]) -> None:
    args = [*compose_command(), *(a for f in files for a in ("-f", f))]
    rendered = yaml.safe_load(run([*args, "config"], ROOT))
    assert {"rabbitmq", "redis", "orchestrator", "prometheus"} <= set(rendered["services"])


def render_k8s(tmp_path: Path) -> list[dict[str, Any]]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl not installed: deploy/k8s was not rendered")
    copy = tmp_path / "k8s"
    shutil.copytree(K8S, copy, ignore=shutil.ignore_patterns("*.env"))  # never real secrets
    for example in (copy / "secrets").glob("*.env.example"):
        shutil.copy(example, example.with_suffix(""))
    return [d for d in yaml.safe_load_all(run([kubectl, "kustomize", str(copy)], ROOT)) if d]


def test_kustomize_renders_and_every_secret_key_a_pod_reads_exists(tmp_path: Path) -> None:
    docs = render_k8s(tmp_path)
    secrets = {d["metadata"]["name"]: set(d["data"]) for d in docs if d["kind"] == "Secret"}
    workloads = [d for d in docs if d["kind"] in {"Deployment", "Job"}]
    assert {w["metadata"]["name"] for w in workloads} >= {
        "orchestrator",
        "payment",
        "baton-declare",
    }
    for workload in workloads:
        for container in workload["spec"]["template"]["spec"]["containers"]:
            names = {e["name"] for e in container.get("env", [])}
            assert {"BATON_RABBIT__URL", "BATON_REDIS__URL"} <= names, workload["metadata"]["name"]
            for ref in container.get("envFrom", []):
                assert "secretRef" not in ref, "keys from Secrets are named one by one"
            for entry in container.get("env", []):
                ref = entry.get("valueFrom", {}).get("secretKeyRef")
                if ref and not ref.get("optional"):
                    assert ref["key"] in secrets.get(ref["name"], set()), (workload, ref)


def test_every_process_reads_its_signing_and_sealing_keys_from_a_secret(tmp_path: Path) -> None:
    docs = render_k8s(tmp_path)
    for doc in docs:
        if doc["kind"] != "Deployment":
            continue
        (container,) = doc["spec"]["template"]["spec"]["containers"]
        from_secrets = {e["name"] for e in container["env"] if "secretKeyRef" in e["valueFrom"]}
        wanted = {"BATON_SIGNING__PRIVATE_KEY", "BATON_SIGNING__PUBLIC_KEYS", "BATON_SEALING__KEYS"}
        assert wanted <= from_secrets, doc["metadata"]["name"]


def test_no_guest_anywhere_in_deploy() -> None:
    """RabbitMQ's default user exists only in the test overlay (tests/services/)."""
    files = [p for p in (ROOT / "deploy").rglob("*") if p.is_file()]
    files.append(ROOT / "docker-compose.yml")
    assert len(files) > 20
    found = [str(p.relative_to(ROOT)) for p in files if "guest" in p.read_bytes().lower().decode(
        "utf-8", "replace")]  # fmt: skip
    assert found == []
