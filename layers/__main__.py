"""``python -m layers``: build the Lambda layers and function zips, print their sizes.

Exits non-zero with a message naming the artifact and the limit when a zip is over 50 MB or a
function with its layers is over 250 MB unzipped.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from layers.build import (
    MIB,
    PLATFORMS,
    BuildConfig,
    BuildResult,
    LayerBuildError,
    SizeLimitError,
    build,
)

DEFAULT_OUT = Path("layers/build")
app = typer.Typer(add_completion=False, pretty_exceptions_show_locals=False)
console = Console()
err_console = Console(stderr=True)


@app.command()
def main(
    arch: str = typer.Option(
        None,
        "--arch",
        help=f"Lambda architecture: {' or '.join(PLATFORMS)}. Default: PRICEBOT_LAMBDA_ARCH.",
        show_default=False,
    ),
    python: str = typer.Option("3.12", "--python", help="Lambda Python runtime version."),
    out: Annotated[Path, typer.Option("--out", help="Where the zips go.")] = DEFAULT_OUT,
    allow_missing_handlers: bool = typer.Option(
        False, "--allow-missing-handlers", help="Build even if lambdas/<fn>/handler.py is absent."
    ),
    include_boto3: bool = typer.Option(
        False, "--include-boto3", help="Pack our pinned boto3 instead of the runtime's."
    ),
    bytecode_python: str = typer.Option(
        None,
        "--bytecode-python",
        help="A Python of the runtime's version to precompile .pyc with ('' to skip). "
        "Default: python3.N on PATH or found by uv, else no bytecode.",
        show_default=False,
    ),
    zip_limit_mb: float = typer.Option(50.0, "--zip-limit-mb", help="Largest zip allowed."),
    unzipped_limit_mb: float = typer.Option(
        250.0, "--unzipped-limit-mb", help="Largest function plus layers, unzipped."
    ),
) -> None:
    """Build layer-core.zip, layer-data.zip, ingest.zip and transform.zip, and manifest.json."""
    if arch is None:
        from pydantic import ValidationError

        from pricebot.settings import get_settings

        try:
            arch = get_settings().lambda_arch
        except ValidationError as exc:
            problems = "; ".join(
                f"PRICEBOT_{'_'.join(map(str, e['loc'])).upper()}: {e['msg']}" for e in exc.errors()
            )
            err_console.print(f"[bold red]error:[/] bad setting: {problems}")
            raise typer.Exit(1) from None
    try:
        config = BuildConfig(
            arch=arch,  # type: ignore[arg-type]  # validated by BuildConfig
            python=python,
            out=out,
            allow_missing_handlers=allow_missing_handlers,
            include_boto3=include_boto3,
            bytecode_python=bytecode_python,
            zip_limit_bytes=int(zip_limit_mb * MIB),
            unzipped_limit_bytes=int(unzipped_limit_mb * MIB),
        )
        with console.status("building") as status:
            result = build(config, step=lambda message: status.update(f"building {message}"))
    except SizeLimitError as exc:
        for violation in exc.violations:
            err_console.print(f"[bold red]error:[/] {violation}")
        raise typer.Exit(1) from None
    except LayerBuildError as exc:
        err_console.print(f"[bold red]error:[/] {exc}")
        raise typer.Exit(1) from None
    show(result)


def show(result: BuildResult) -> None:
    """The artifacts' sizes against Lambda's limits, as tables."""
    config = result.config
    artifacts = Table(title=f"Lambda artifacts · {config.runtime} · {config.arch}")
    for column in ("artifact", "kind", "zipped MB", "unzipped MB", "files", "sha256"):
        artifacts.add_column(column, justify="right" if "MB" in column else "left")
    for artifact in result.artifacts.values():
        artifacts.add_row(
            artifact.name,
            artifact.kind,
            f"{artifact.zipped_bytes / MIB:.2f}",
            f"{artifact.unzipped_bytes / MIB:.2f}",
            str(artifact.files),
            artifact.sha256[:12],
        )
    console.print(artifacts)
    functions = Table(title="Functions with their layers (unzipped)")
    for column in ("function", "layers", "unzipped MB", "limit MB", "headroom"):
        functions.add_column(column, justify="right" if "MB" in column else "left")
    for name in ("ingest", "transform"):
        artifact = result.artifacts[f"{name}.zip"]
        total = result.function_unzipped_bytes(name)
        limit = config.unzipped_limit_bytes
        functions.add_row(
            name + ("" if artifact.handler_present else " [yellow](no handler)[/]"),
            ", ".join(artifact.layers),
            f"{total / MIB:.2f}",
            f"{limit / MIB:.0f}",
            f"{1 - total / limit:.0%}",
        )
    console.print(functions)
    if not result.bytecode:
        console.print(
            f"[yellow]note:[/] no Python {config.python} found, so no precompiled bytecode "
            "(cold starts compile imports); pass --bytecode-python to add it"
        )
    console.print(f"manifest: {result.manifest_path} · {result.seconds:.1f} s")


if __name__ == "__main__":
    app()
