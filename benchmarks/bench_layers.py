"""Lambda packaging: every artifact's zipped and unzipped size, and the build's wall time.

Sizes are compared with Lambda's limits as ratios (share of the 50 MB zip limit, share of the
250 MB function-plus-layers limit), measured in the same run. The build reads wheels from uv's
cache, so the time is that of a warm rebuild unless the cache was empty.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import tempfile
import time
import zipfile
from pathlib import Path

from layers.build import (
    FUNCTION_LAYERS,
    MIB,
    BuildConfig,
    BuildResult,
    compile_bytecode,
    export_requirements,
    install_wheels,
)
from layers.build import build as build_layers

RUNTIME_PACKAGES = (
    "boto3",
    "botocore",
    "s3transfer",
    "urllib3",
    "jmespath",
    "python-dateutil",
    "six",
)


def run() -> dict:
    with tempfile.TemporaryDirectory(prefix="bench-layers-") as out:
        started = time.perf_counter()
        result = build_layers(BuildConfig(out=Path(out), allow_missing_handlers=True))
        seconds = time.perf_counter() - started
        config = result.config
        artifacts = {
            name: {
                "zipped_mb": round(a.zipped_bytes / MIB, 2),
                "unzipped_mb": round(a.unzipped_bytes / MIB, 2),
                "files": a.files,
                "share_of_zip_limit": round(a.zipped_bytes / config.zip_limit_bytes, 3),
            }
            for name, a in result.artifacts.items()
        }
        functions = {
            name: {
                "layers": [layer.removesuffix(".zip") for layer in layers],
                "unzipped_mb_with_layers": round(result.function_unzipped_bytes(name) / MIB, 2),
                "share_of_250mb_limit": round(
                    result.function_unzipped_bytes(name) / config.unzipped_limit_bytes, 3
                ),
            }
            for name, layers in FUNCTION_LAYERS.items()
        }
        ingest = result.function_unzipped_bytes("ingest")
        transform = result.function_unzipped_bytes("transform")
        cold_imports = _cold_import_seconds(result, Path(out)) if result.bytecode else None
        return {
            "cold_import_seconds": cold_imports,
            "runtime": config.runtime,
            "arch": config.arch,
            "bytecode": result.bytecode,
            "build_seconds": round(seconds, 2),
            "artifacts": artifacts,
            "functions": functions,
            "ingest_to_transform_unzipped_ratio": round(ingest / transform, 3),
        }


def _cold_import_seconds(result: BuildResult, scratch: Path, repeat: int = 3) -> dict:
    """Median time to import each handler from the unpacked artifacts on the runtime's Python,
    with the shipped .pyc files and with them removed (read-only code: nothing is cached)."""
    from layers.build import find_bytecode_python

    python = find_bytecode_python(BuildConfig())
    assert python is not None
    root = Path(__file__).resolve().parents[1]
    locked = {r.name: r for r in export_requirements(root)}
    runtime = scratch / "runtime"  # what the Lambda runtime provides, compiled as it ships
    install_wheels([locked[n] for n in RUNTIME_PACKAGES], runtime, result.config)
    compile_bytecode(python, runtime)
    figures = {}
    for function in FUNCTION_LAYERS:
        unpacked = scratch / f"unpacked-{function}"
        artifact = result.artifacts[f"{function}.zip"]
        for name in (artifact.name, *artifact.layers):
            with zipfile.ZipFile(result.artifacts[name].path) as archive:
                archive.extractall(unpacked)
        with_pyc = _median_import(python, unpacked, runtime, function, repeat)
        for cache in list(unpacked.rglob("__pycache__")):
            shutil.rmtree(cache)
        without_pyc = _median_import(python, unpacked, runtime, function, repeat)
        figures[function] = {
            "with_bytecode": round(with_pyc, 3),
            "without_bytecode": round(without_pyc, 3),
            "speedup": round(without_pyc / with_pyc, 2),
        }
    return figures


def _median_import(python: str, unpacked: Path, runtime: Path, function: str, repeat: int) -> float:
    probe = (
        "import time; t = time.perf_counter(); "
        f"import lambdas.{function}.handler; print(time.perf_counter() - t)"
    )
    env = {
        "PYTHONPATH": f"{unpacked}:{unpacked / 'python'}:{runtime}",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PATH": os.environ["PATH"],
    }
    times = []
    for _ in range(repeat):
        done = subprocess.run(
            [python, "-S", "-c", probe], env=env, capture_output=True, text=True, check=True
        )
        times.append(float(done.stdout.strip()))
    return statistics.median(times)
