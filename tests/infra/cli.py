"""The ``pricebot`` command tree as the installed CLI builds it, for checking the commands the
stack's tasks and images run (they must exist, with the options they pass)."""

from __future__ import annotations


def command_problems(argv: list[str]) -> list[str]:
    """Whether ``pricebot <argv>`` names a real command and real options (the CLI's own tree,
    as click parses it; typer ships its own copy of click, so it is walked by duck typing)."""
    import typer

    from pricebot_cli import app

    command = typer.main.get_command(app)
    ctx = command.context_class(command)
    words = list(argv)
    while words and hasattr(command, "get_command") and not words[0].startswith("-"):
        name = words.pop(0)
        sub = command.get_command(ctx, name)
        if sub is None:
            return [f"`pricebot {' '.join(argv)}`: there is no command {name!r}"]
        command, ctx = sub, sub.context_class(sub, parent=ctx)
    options = {opt for param in command.params for opt in getattr(param, "opts", [])}
    options |= {"--help"}
    return [
        f"`pricebot {' '.join(argv)}`: {word} is not an option of {command.name!r}"
        for word in words
        if word.startswith("--") and word not in options
    ]
