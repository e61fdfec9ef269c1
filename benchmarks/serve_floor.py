"""The HTTP floor the serving benchmark compares against: a bare uvicorn + Starlette JSON endpoint.

It does what any JSON API must (parse the body, answer a JSON object the size of a pricebot
prediction) and nothing else: no model, no features, no log, no auth. Run by
``benchmarks/bench_serve.py`` as ``uvicorn benchmarks.serve_floor:app`` (one worker, uvicorn's
defaults) beside the service, on the same machine, in the same run.
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route


async def predict(request: Request) -> JSONResponse:
    body = await request.json()
    return JSONResponse(
        {
            "symbol": body.get("symbol"),
            "target": "ret24h",
            "prediction": 0.00123,
            "implied_price": 100.123,
            "close": 100.0,
            "horizon_minutes": 1440,
            "model_name": "pricebot-btcusdt-ret24h",
            "model_version": "1",
            "alias": "champion",
            "feature_time": "2026-12-02T12:00:00+00:00",
            "feature_age_seconds": 12.5,
            "stale": False,
            "request_id": "0123456789abcdef0123456789abcdef",
        }
    )


app = Starlette(routes=[Route("/predict", predict, methods=["POST"])])
