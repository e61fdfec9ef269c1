"""``python -m pricebot_cli ...``: the same as ``pricebot ...`` (how the stack starts children)."""

from pricebot_cli.app import main

if __name__ == "__main__":
    main()
