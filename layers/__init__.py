"""Packaging for AWS Lambda: dependency layers and function zips, with Lambda's size guards.

``make layers`` (``python -m layers``) writes ``layers/build/``: ``layer-core.zip``,
``layer-data.zip``, ``ingest.zip``, ``transform.zip`` and ``manifest.json``, which the
infrastructure and CI read. See :mod:`layers.build` for how and why.
"""

from layers.build import (
    FUNCTION_LAYERS,
    Artifact,
    BuildConfig,
    BuildResult,
    DependencyInstallError,
    LayerBuildError,
    MissingHandlerError,
    SizeLimitError,
    build,
)

__all__ = [
    "FUNCTION_LAYERS",
    "Artifact",
    "BuildConfig",
    "BuildResult",
    "DependencyInstallError",
    "LayerBuildError",
    "MissingHandlerError",
    "SizeLimitError",
    "build",
]
