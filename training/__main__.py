"""``python -m training --symbol AVAXUSDT [--target ret24h] [--trials 30] ...``: the job image's
entry point; the same command as ``pricebot train``."""

from __future__ import annotations

import sys

from pricebot.cli import app


def main() -> None:
    app(["train", *sys.argv[1:]], prog_name="python -m training")


if __name__ == "__main__":
    main()
