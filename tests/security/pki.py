"""A throwaway certificate authority for the TLS tests, made with the OS's openssl."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


@dataclass(frozen=True)
class Pki:
    """A CA, a server certificate for localhost/127.0.0.1 and one client certificate."""

    dir: Path

    @property
    def ca(self) -> Path:
        return self.dir / "ca.pem"

    @property
    def server_cert(self) -> Path:
        return self.dir / "server.pem"

    @property
    def server_key(self) -> Path:
        return self.dir / "server.key"

    @property
    def client_cert(self) -> Path:
        return self.dir / "client.pem"

    @property
    def client_key(self) -> Path:
        return self.dir / "client.key"

    @classmethod
    def create(cls, where: Path) -> Pki:
        where.mkdir(parents=True, exist_ok=True)
        _openssl(
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-subj",
            "/CN=baton-test-ca",
            cwd=where,
        )
        (where / "server.ext").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
        (where / "client.ext").write_text("extendedKeyUsage=clientAuth\n")
        for name, subject in (("server", "/CN=localhost"), ("client", "/CN=baton-client")):
            _openssl(
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                f"{name}.key",
                "-out",
                f"{name}.csr",
                "-subj",
                subject,
                cwd=where,
            )
            _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                     "-CAcreateserial", "-days", "2", "-out", f"{name}.pem",
                     "-extfile", f"{name}.ext", cwd=where)  # fmt: skip
        for key in where.glob("*.key"):
            key.chmod(0o600)
        return cls(where)
