"""``pricebot exchange``: serve the simulated Binance exchange (offline demo, manual testing)."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    app.command("exchange")(serve_exchange)


def serve_exchange(
    port: int = typer.Option(8900, "--port", help="TCP port (0 picks a free one)."),
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to listen on."),
    seed: int = typer.Option(7, "--seed", help="Seed of the synthetic market and of the faults."),
    symbols: str = typer.Option(
        None,
        "--symbols",
        help="Comma-separated symbols to serve (default: PRICEBOT_SYMBOLS).",
        show_default=False,
    ),
    history_days: float = typer.Option(30, "--history-days", help="Days of history served."),
    now: str = typer.Option(
        None,
        "--now",
        help="Freeze the exchange's clock at this UTC time (e.g. 2026-03-01T12:00:00Z); "
        "default: the wall clock.",
        show_default=False,
    ),
    from_archive: list[Path] = typer.Option(  # noqa: B008 - typer reads its defaults this way
        None,
        "--from-archive",
        help="Replay these Binance Vision files (or directories of them) instead of the "
        "synthetic market; repeat the option for several.",
        show_default=False,
    ),
    market: str = typer.Option(
        "market",
        "--market",
        help="market (realistic structure), random_walk (iid returns: nothing to learn) or "
        "swinging (market plus hour-long swings that revert: learnable, so the offline demo can "
        "show a promotion; real data or a random walk get the same gate and usually no "
        "promotion).",
    ),
    failure_rate: float = typer.Option(0.0, "--failure-rate", help="Share answered 5xx."),
    weight_limit: int = typer.Option(
        None, "--weight-limit", help="Request weight per minute before 429.", show_default=False
    ),
    retry_after: int = typer.Option(1, "--retry-after", help="Retry-After of a 429, seconds."),
    malformed_rate: float = typer.Option(
        0.0, "--malformed-rate", help="Share of klines pages with a corrupt row."
    ),
    latency_ms: float = typer.Option(0.0, "--latency-ms", help="Added to every answer."),
    restricted: bool = typer.Option(False, "--restricted", help="Answer everything with 451."),
    prewarm: bool = typer.Option(
        False,
        "--prewarm",
        help="Generate and format the whole synthetic history before serving (about 10 ms per "
        "symbol and day), so that first requests are as fast as later ones (benchmarks).",
    ),
) -> None:
    """Serve a Binance-compatible /api/v3 (klines, ping, time, exchangeInfo) until Ctrl-C.

    Candles come from a seeded synthetic market (a deterministic function of seed, symbol and
    minute) or from replayed archives; faults can be injected for testing clients.
    """
    import socket
    import time

    import uvicorn
    from pydantic import ValidationError
    from rich.console import Console

    from pricebot.errors import UsageError

    console = Console()
    from pricebot.errors import ArchiveError
    from pricebot.settings import get_settings, split_csv
    from pricebot_exchange.exchange import ExchangeConfig, create_app

    try:
        config = ExchangeConfig(
            seed=seed,
            symbols=split_csv(symbols.upper()) if symbols else get_settings().symbols,
            history_days=history_days,
            now=now,
            market=market,
            failure_rate=failure_rate,
            weight_limit=weight_limit,
            retry_after_seconds=retry_after,
            malformed_rate=malformed_rate,
            latency_ms=latency_ms,
            restricted=restricted,
            archives=from_archive or [],
        )
    except ValidationError as exc:
        problems = "; ".join(
            (f"--{str(e['loc'][0]).replace('_', '-')}: " if e["loc"] else "")
            + e["msg"].removeprefix("Value error, ")
            for e in exc.errors()
        )
        raise UsageError(f"invalid exchange options: {problems}") from None
    try:
        app = create_app(config)
    except (ArchiveError, ValueError, OSError) as exc:
        raise UsageError(f"cannot replay the archives: {exc}") from None
    state = app.state.exchange
    if prewarm and not config.archives:
        started = time.perf_counter()
        days = state.synthetic.warm(config)
        console.print(f"prewarmed {days} symbol-days in {time.perf_counter() - started:.1f} s")
    if port == 0:
        with socket.socket() as s:
            s.bind((host, 0))
            port = s.getsockname()[1]
    source = (
        f"replaying {len(config.archives)} archive path(s)"
        if config.archives
        else (f"synthetic {config.market}, seed {config.seed}, {config.history_days:g} days")
    )
    console.print(
        f"simulated exchange at [bold]http://{host}:{port}[/] ({source}; symbols "
        f"{', '.join(state.symbols())}); set PRICEBOT_BINANCE_URL=http://{host}:{port} to use it",
        soft_wrap=True,
    )
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False, lifespan="off")
