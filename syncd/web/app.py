"""``create_app(config, engine)``: the Starlette app the daemon serves (``server.host``/``port``).

Routes: ``/hooks/{provider}/{secret}`` (each provider's webhooks into the inbox),
``/confirm/{token}``, ``/unsubscribe/{token}``, ``/prefs/{token}`` (the contact's pages),
``/healthz`` (the process answers), ``/readyz`` (the master base answers), ``/metrics``,
``/openapi.json`` (this list, described: syncd/web/openapi.py), ``/status`` and ``/`` (where the
lists stand, as JSON and as a page: syncd/web/status_page.py), ``/console/...`` (the team console:
syncd/web/console.py).
"""

from __future__ import annotations

from collections.abc import Mapping

import sqlalchemy as sa
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from sqlalchemy.engine import Engine
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from connectors.contract import Connector
from syncd import doi, metrics
from syncd.config import Config
from syncd.log import get_logger
from syncd.providers import Connectors
from syncd.web import openapi
from syncd.web.console import Console
from syncd.web.headers import SecurityHeaders
from syncd.web.hooks import WebhookReceiver
from syncd.web.intake import InboxWriter
from syncd.web.pages import Pages
from syncd.web.proxies import ClientAddress
from syncd.web.status_page import StatusPages

log = get_logger(__name__)

RETRY_AFTER_S = "30"
# The master base cannot be reached, answers too slowly, or every pooled connection is busy: try
# again later. Any other database error is a bug, not an outage, and stays a 500.
DATABASE_UNAVAILABLE = (
    sa.exc.OperationalError,
    sa.exc.InterfaceError,
    sa.exc.TimeoutError,
    sa.exc.DisconnectionError,
)


async def _unavailable(request: Request, exc: Exception) -> Response:
    log.warning("web.database_unavailable", method=request.method, error=type(exc).__name__)
    return PlainTextResponse(
        "Service Unavailable: the master base cannot be reached; try again later",
        status_code=503,
        headers={"Retry-After": RETRY_AFTER_S},
    )


def create_app(
    config: Config,
    engine: Engine,
    *,
    connectors: Mapping[str, Connector] | None = None,
    send: doi.Send | None = None,
) -> Starlette:
    """The app. ``connectors`` by provider (default: built from the config); ``send``: the mail
    transport for renewed confirmation links (default: ``double_opt_in.transport``)."""
    known = Connectors.of(config, connectors)
    hooks = WebhookReceiver(config, InboxWriter(engine), known)
    env = Environment(
        loader=FileSystemLoader(str(doi.TEMPLATES)),
        autoescape=select_autoescape(["html"]),
        undefined=StrictUndefined,
    )
    mailer: list[doi.Send] = [send] if send is not None else []

    def transport() -> doi.Send:
        if not mailer:
            mailer.append(doi.transport(config, known))
        return mailer[0]

    pages = Pages(config, engine, env, transport)

    async def healthz(request: Request) -> Response:
        return PlainTextResponse("ok")

    async def readyz(request: Request) -> Response:
        def ping() -> None:
            with engine.connect() as conn:
                conn.execute(sa.text("SELECT 1"))

        try:
            await run_in_threadpool(ping)
        except sa.exc.SQLAlchemyError as exc:
            log.warning("web.not_ready", error=type(exc).__name__)
            return JSONResponse(
                {"status": "unavailable", "database": "unreachable"},
                status_code=503,
                headers={"Retry-After": RETRY_AFTER_S},
            )
        return JSONResponse({"status": "ready"})

    async def metrics_endpoint(request: Request) -> Response:
        body, content_type = metrics.exposition()
        return Response(body, media_type=content_type)

    async def openapi_endpoint(request: Request) -> Response:
        return JSONResponse(openapi.document())

    routes = [
        *hooks.routes(),
        Route("/confirm/{token}", pages.confirm_get, methods=["GET"]),
        Route("/confirm/{token}", pages.confirm_post, methods=["POST"]),
        Route("/confirm/{token}/renew", pages.confirm_renew, methods=["POST"]),
        Route("/unsubscribe/{token}", pages.unsubscribe_get, methods=["GET"]),
        Route("/unsubscribe/{token}", pages.unsubscribe_post, methods=["POST"]),
        Route("/prefs/{token}", pages.prefs_get, methods=["GET"]),
        Route("/prefs/{token}", pages.prefs_post, methods=["POST"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/metrics", metrics_endpoint, methods=["GET"]),
        Route("/openapi.json", openapi_endpoint, methods=["GET"]),
        *StatusPages(config, engine, env).routes(),
        *Console(config, engine, env).routes(),  # /console: the team's pages (syncd/web/console.py)
    ]
    app = Starlette(
        routes=routes,
        exception_handlers=dict.fromkeys(DATABASE_UNAVAILABLE, _unavailable),
        middleware=[
            Middleware(ClientAddress, trusted=config.server.trusted_proxies),
            Middleware(SecurityHeaders, csp=pages.content_security_policy),
        ],
    )
    # Starlette's trailing-slash redirect builds an absolute URL from the Host header, which a
    # client chooses: ``/prefs/<token>/`` answers 404 rather than redirect to another site.
    app.router.redirect_slashes = False
    app.state.config, app.state.engine, app.state.connectors = config, engine, known
    return app
