"""The ASGI middleware BentoML builds into each worker's app: the API's routes go to
:class:`pricebot_service.http.Api`.

A module of its own, importing nothing of the core: ``bentoml serve`` imports the service module
in its supervising process only to read the service's configuration before it starts the
workers, so whatever that import pulls in (the serving core, pandas, psycopg) would delay every
worker's start. The workers import :mod:`pricebot_service.http` when they build the service.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class ApiMiddleware:
    """The ASGI middleware BentoML builds into each worker's app (``add_asgi_middleware``).

    It finds the worker's service instance when the first request arrives (BentoML creates the
    instance during the app's start-up, after building the middleware stack) and hands every
    HTTP request to its :class:`Api`, with BentoML's app as the downstream for other routes.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._api: Any = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        api = self._api
        if api is None:
            import bentoml

            api = self._api = bentoml.get_current_service().api
        await api(scope, receive, send, self.app)
