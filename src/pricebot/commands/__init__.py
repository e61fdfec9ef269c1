"""CLI sub-commands, one module per area; each defines ``register(app)``.

Modules here import only typer and the settings at import time; the work they call is
imported inside the command so ``pricebot --help`` stays quick.
"""
