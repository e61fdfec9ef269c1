"""``python -m pricebot_service [--port P] [--host H]``: ``pricebot serve`` without the rest of the
``pricebot`` command tree (``pricebot up`` starts the service so; see
:mod:`pricebot_service.launch`)."""

from __future__ import annotations

import argparse
import sys

from pricebot.errors import PricebotError
from pricebot_service.launch import run


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m pricebot_service", description=__doc__)
    parser.add_argument("--port", type=int, default=None, help="Overrides PRICEBOT_SERVICE_PORT.")
    parser.add_argument("--host", default="127.0.0.1", help="0.0.0.0 for every interface.")
    options = parser.parse_args(argv)
    try:
        run(options.port, options.host)
    except PricebotError as exc:  # as the pricebot CLI shows it: the message, no traceback
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()
