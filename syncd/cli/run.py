"""``syncd run``: the daemon."""

from __future__ import annotations

import errno
import socket

import click

from syncd.app import App
from syncd.cli.output import Failure


@click.command()
@click.option("--host", help="Address to listen on [default: the config's server.host, else 127.0.0.1].")
@click.option("--port", type=int, help="Port [default: the config's server.port, else 8080].")
@click.option(
    "--trusted-proxies",
    envvar="SYNCD_TRUSTED_PROXIES",
    metavar="CIDR,...",
    help="Reverse proxies whose X-Forwarded-For gives the client's address, comma-separated "
    "(e.g. 10.0.0.0/8,127.0.0.1) [env SYNCD_TRUSTED_PROXIES; default: the config's "
    "server.trusted_proxies, else none].",
)
@click.pass_obj
def run(app: App, host: str | None, port: int | None, trusted_proxies: str | None) -> None:
    """Run the daemon: the web app (webhooks, confirmation and preference pages, /healthz,
    /readyz, /metrics) and the scheduler (a sync per list on its schedule, the config's sync.jobs
    lists at a time; webhook inbox, double opt-in mail, hygiene scan). SIGTERM finishes the batch
    in flight, then exits."""
    from syncd import daemon
    from syncd.netaddr import parse_networks

    config, engine = app.config, app.engine
    if trusted_proxies is not None:
        try:
            networks = parse_networks(trusted_proxies)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--trusted-proxies") from None
        server = config.server.model_copy(update={"trusted_proxies": networks})
        config = config.model_copy(update={"server": server})
    proxies = ", ".join(str(n) for n in config.server.trusted_proxies) or "none"
    host, port = host or config.server.host, port or config.server.port
    sock = _listen(host, port)
    click.echo(f"syncd listening on http://{host}:{port} (trusted proxies: {proxies})", err=True)
    daemon.run(config, engine, host=host, port=port, sock=sock)


def _listen(host: str, port: int) -> socket.socket:
    """The daemon's socket, bound and listening before anything says so: a port already in use
    is one clear error, not a "listening" line followed by a server that never starts."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        sock = socket.socket(family, kind, proto)
    except OSError as exc:
        raise Failure(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does
        sock.bind(address)
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        hint = " (another process listens there: choose another with --port or server.port)"
        busy = exc.errno == errno.EADDRINUSE
        raise Failure(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}{hint if busy else ''}"
        ) from None
    sock.set_inheritable(True)
    return sock
