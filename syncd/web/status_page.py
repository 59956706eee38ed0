"""``GET /status`` (JSON) and ``GET /`` (a read-only HTML page, French or English): the same
status as ``syncd status`` (``syncd.status``).

No authentication: the config has no operator credential to check, and what is shown is what
``/metrics`` already tells anyone who reaches the daemon — counts, times, list names and provider
list ids, a run's error with addresses and keys masked. No address, name or secret.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.engine import Engine
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from syncd import status as state
from syncd.config import Config
from syncd.web.wording import TEXT, pick_language

NO_STORE = {"Cache-Control": "no-store"}


class StatusPages:
    def __init__(self, config: Config, engine: Engine, env: Any):
        self.config, self.engine, self.env = config, engine, env

    def routes(self) -> list[Route]:
        return [
            Route("/status", self.status_json, methods=["GET"]),
            Route("/", self.status_page, methods=["GET"]),
        ]

    async def _status(self) -> dict[str, Any]:
        return await run_in_threadpool(state.status, self.engine, self.config)

    async def status_json(self, request: Request) -> Response:
        return JSONResponse(await self._status(), headers=NO_STORE)

    async def status_page(self, request: Request) -> Response:
        lang = pick_language(
            request.query_params.get("lang"),
            request.headers.get("accept-language"),
            self.config.double_opt_in.language,
        )
        data = await self._status()
        t = TEXT[lang]
        up = data["daemon"]["up"]
        daemon = t[{True: "status.daemon.up", False: "status.daemon.down", None: "status.daemon.unknown"}[up]]
        lists = [{**lst, "summary": _summary(t, lst)} for lst in data["lists"]]
        html = self.env.get_template("page_status.html").render(
            lang=lang,
            t=t,
            title=t["status.title"],
            generated=t["status.generated"].format(when=data["generated_at"]),
            daemon=daemon,
            status={**data, "lists": lists},
            doi=t["status.doi"].format(
                pending=data["double_opt_in"]["pending"], dead=data["double_opt_in"]["dead_requests"]
            ),
            inbox=t["status.inbox"].format(
                backlog=data["inbox"]["backlog"], dead=data["inbox"]["dead_letters"]
            ),
        )
        return HTMLResponse(html, headers=NO_STORE)


def _summary(t: dict[str, str], lst: dict[str, Any]) -> str:
    nxt = lst["next_run"]
    key = f"status.next.{nxt['state']}"
    if nxt["state"] == "waiting_for_daemon" and nxt["at"] is None:
        key = "status.next.first"  # never synced: at the daemon's first look
    when = t[key].format(at=nxt["at"])
    return t["status.summary"].format(
        next=when, flags=lst["open_flags"]["total"], pending=lst["pending_double_opt_in"]
    )
