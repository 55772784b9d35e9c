"""``baton console``: serve the read-only web console (``baton.console``) until interrupted."""

from __future__ import annotations

import ipaddress
import socket
import sys

import click

from baton.cli.base import _settings, main
from messaging.observability.logs import masked


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


@main.command("console")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port", default=8765, show_default=True, type=click.IntRange(1, 65535),
    help="Port to listen on.",
)  # fmt: skip
@click.pass_context
def console(ctx: click.Context, host: str, port: int) -> None:
    """Serve a read-only web console: search sagas, each saga's timeline, dead letters and
    live counts. Needs only BATON_REDIS__URL and BATON_RABBIT__URL (no sealing key: sealed
    fields are shown masked). It has no login: keep it on loopback or behind one.

    Exit status: 0 when interrupted, 1 when the address cannot be listened on.
    """
    from baton.console import listening_socket, server  # noqa: PLC0415 - keeps others light

    settings = _settings(ctx)
    try:
        sock = listening_socket(host, port)
    except socket.gaierror:
        click.echo(f"baton console: --host {host!r} is not an address this machine knows", err=True)
        sys.exit(2)
    except OSError as exc:
        click.echo(f"baton console: cannot listen on {host}:{port}: {masked(str(exc))}", err=True)
        sys.exit(1)
    if not _loopback(host):
        click.echo(f"baton console: listening on {host}, not loopback: it has no login", err=True)
    click.echo(f"baton console: http://{host}:{port}/ (namespace {settings.namespace or '-'})")
    server(settings).run(sockets=[sock])
