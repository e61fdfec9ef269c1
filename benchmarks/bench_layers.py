"""Lambda packaging: every artifact's zipped and unzipped size, and the build's wall time.

Sizes are compared with Lambda's limits as ratios (share of the 50 MB zip limit, share of the
250 MB function-plus-layers limit), measured in the same run. The build reads wheels from uv's
cache, so the time is that of a warm rebuild unless the cache was empty.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from layers.build import FUNCTION_LAYERS, MIB, BuildConfig, build


def run() -> dict:
    with tempfile.TemporaryDirectory(prefix="bench-layers-") as out:
        started = time.perf_counter()
        result = build(BuildConfig(out=Path(out), allow_missing_handlers=True))
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
        return {
            "runtime": config.runtime,
            "arch": config.arch,
            "bytecode": result.bytecode,
            "build_seconds": round(seconds, 2),
            "artifacts": artifacts,
            "functions": functions,
            "ingest_to_transform_unzipped_ratio": round(ingest / transform, 3),
        }
