"""The ``pricebot`` command line (typer + rich), an adapter of the core like the others.

``app`` is the whole command tree (the host's commands and every installed plug-in's);
``main`` is the console script.
"""

from pricebot_cli.app import app, main

__all__ = ["app", "main"]
