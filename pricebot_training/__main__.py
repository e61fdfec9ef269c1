"""``python -m pricebot_training --symbol AVAXUSDT [--target ret24h] [--trials 30] ...``: the
job's entry point without the console script; the same command as ``pricebot train``."""

from __future__ import annotations

import sys


def main() -> None:
    import typer

    from pricebot.errors import PricebotError
    from pricebot_training.cli import register

    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)

    @app.callback()
    def _group() -> None:
        """A group, as in the full CLI (a lone command would swallow its own name)."""

    register(app)
    try:
        app(["train", *sys.argv[1:]], prog_name="python -m pricebot_training")
    except PricebotError as exc:  # as the pricebot CLI reports it: the message, no traceback
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
