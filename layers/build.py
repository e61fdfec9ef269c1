"""Build the Lambda artifacts: dependency layers from Lambda-platform wheels, and function zips.

Two layers instead of one, so the ingest function stays small and never carries numpy/pandas:

- ``layer-core.zip``: the core's third-party dependencies (pydantic, httpx, psycopg, ...) and
  Powertools with its tracer. Both functions use it.
- ``layer-data.zip``: numpy, pandas and what only they need. Only the transform function uses it.

The split is computed from the dependency graph in ``uv.lock`` (whatever numpy and pandas pull in
that nothing else needs goes to the data layer), and versions come from ``uv export`` of the same
lock, so the Lambdas run exactly the versions the tests ran. boto3/botocore/s3transfer/urllib3
are left to the Lambda runtime, which ships them (``include_boto3`` packs our pinned ones).

Wheels are installed for the Lambda platform (manylinux, x86_64 or aarch64, CPython of the
chosen version) with ``uv pip install --only-binary :all:``: no source builds, so no chance of a
library compiled for this machine ending up in the zip. uv keeps downloads in its cache
(~/.cache/uv), so a second build only unpacks and zips.

Zips are deterministic (sorted entries, fixed timestamps): an unchanged input gives the same
sha256, and Pulumi does not publish a new layer version for nothing.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shutil
import subprocess
import time
import tomllib
import zipfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

Arch = Literal["x86_64", "arm64"]

MIB = 1024 * 1024
#: Lambda's limits: a zip uploaded directly, and a function with all its layers, unzipped.
ZIP_LIMIT_BYTES = 50 * MIB
UNZIPPED_LIMIT_BYTES = 250 * MIB

#: uv's names for the Lambda platforms. Amazon Linux 2023 (python3.12+) has glibc 2.34, so
#: manylinux_2_28 wheels run there and every package we use publishes them.
PLATFORMS: dict[str, str] = {
    "x86_64": "x86_64-manylinux_2_28",
    "arm64": "aarch64-manylinux_2_28",
}
#: Machine names as they appear in wheel tags and extension-module file names.
MACHINES: dict[str, str] = {"x86_64": "x86_64", "arm64": "aarch64"}

#: In the Lambda Python runtime already (boto3 and its own dependencies).
RUNTIME_PROVIDED = frozenset({"boto3", "botocore", "s3transfer", "urllib3"})
#: The heavy computing libraries only the transform function needs.
DATA_ROOTS = frozenset({"numpy", "pandas"})

CORE_LAYER = "layer-core"
DATA_LAYER = "layer-data"
#: Function name -> the layers it is deployed with, in order.
FUNCTION_LAYERS: dict[str, tuple[str, ...]] = {
    "ingest": (CORE_LAYER,),
    "transform": (CORE_LAYER, DATA_LAYER),
}

_ZIP_TIME = (1980, 1, 1, 0, 0, 0)
_PRUNED_DIRS = frozenset({"__pycache__", "tests"})
_PRUNED_DIST_INFO = frozenset({"RECORD", "INSTALLER", "REQUESTED", "direct_url.json"})


class LayerBuildError(Exception):
    """A build that cannot go on; the message says what is wrong and what to do."""


class MissingHandlerError(LayerBuildError):
    """A function's handler directory is not there."""


class DependencyInstallError(LayerBuildError):
    """uv could not export or install the dependencies for the Lambda platform."""


class SizeLimitError(LayerBuildError):
    """An artifact, or a function with its layers, is over Lambda's size limit."""

    def __init__(self, violations: list[str]) -> None:
        super().__init__("; ".join(violations))
        self.violations = violations


@dataclass(frozen=True)
class BuildConfig:
    """What to build and where. ``root`` is the repository (uv.lock, src/pricebot, lambdas/)."""

    arch: Arch = "x86_64"
    python: str = "3.12"
    out: Path = Path("layers/build")
    root: Path = Path(__file__).resolve().parents[1]
    allow_missing_handlers: bool = False
    include_boto3: bool = False
    #: A CPython of the target version to precompile bytecode with (Lambda's code directories
    #: are read-only, so without .pyc files every cold start compiles every import). None looks
    #: for one; "" skips compiling.
    bytecode_python: str | None = None
    zip_limit_bytes: int = ZIP_LIMIT_BYTES
    unzipped_limit_bytes: int = UNZIPPED_LIMIT_BYTES

    def __post_init__(self) -> None:
        if self.arch not in PLATFORMS:
            raise LayerBuildError(
                f"unknown Lambda architecture {self.arch!r}: use one of {', '.join(PLATFORMS)} "
                "(option --arch or PRICEBOT_LAMBDA_ARCH)"
            )
        if not re.fullmatch(r"3\.\d{1,2}", self.python):
            raise LayerBuildError(
                f"Python version {self.python!r} is not of the form 3.N (e.g. 3.12), "
                "which is how Lambda names its runtimes (python3.12)"
            )

    @property
    def runtime(self) -> str:
        return f"python{self.python}"

    @property
    def platform(self) -> str:
        return PLATFORMS[self.arch]


@dataclass(frozen=True)
class Requirement:
    """One pinned line of ``uv export``: ``name==version`` and maybe an environment marker."""

    name: str
    version: str
    line: str


@dataclass
class Artifact:
    """A built zip and what is in it."""

    name: str
    kind: Literal["layer", "function"]
    path: Path
    zipped_bytes: int
    unzipped_bytes: int
    sha256: str
    #: base64 of the raw sha256, the form Lambda and Pulumi's ``source_code_hash`` use.
    sha256_base64: str
    files: int
    packages: dict[str, str] = field(default_factory=dict)
    handler: str | None = None
    handler_present: bool | None = None
    layers: tuple[str, ...] = ()


@dataclass
class BuildResult:
    """Every artifact, the functions' totals and where the manifest went."""

    config: BuildConfig
    artifacts: dict[str, Artifact]
    manifest_path: Path
    bytecode: bool
    seconds: float

    def function_unzipped_bytes(self, function: str) -> int:
        """A function's code plus all its layers, unzipped: what Lambda's 250 MB limit counts."""
        artifact = self.artifacts[f"{function}.zip"]
        return artifact.unzipped_bytes + sum(
            self.artifacts[layer].unzipped_bytes for layer in artifact.layers
        )


# ---------------------------------------------------------------------------------------------
# Dependencies: what goes in which layer


def normalize(name: str) -> str:
    """PEP 503 name normalisation, so ``Typing_Extensions`` and ``typing-extensions`` match."""
    return re.sub(r"[-_.]+", "-", name).lower()


def find_uv() -> str:
    """The uv executable (installed by ``make python-deps``)."""
    uv = shutil.which("uv")
    if uv is None:
        try:  # the `uv` package from PyPI, installed into this environment
            from uv import find_uv_bin

            uv = find_uv_bin()
        except (ImportError, FileNotFoundError):
            uv = None
    if uv is None:
        raise DependencyInstallError(
            "uv is not on PATH; it exports the locked versions and installs the Lambda wheels. "
            "Install it with `python3 -m pip install uv` (or run `make python-deps`)."
        )
    return uv


def export_requirements(root: Path, uv: str | None = None) -> list[Requirement]:
    """The locked third-party packages of the core plus the ``lambda`` extra, with markers."""
    if not (root / "uv.lock").exists():
        raise DependencyInstallError(f"no uv.lock in {root}: the layers are built from the lock")
    command = [
        uv or find_uv(),
        "export",
        "--frozen",
        "--no-hashes",
        "--no-dev",
        "--extra",
        "lambda",
        "--no-emit-project",
        "--no-header",
        "--no-annotate",
        "--format",
        "requirements.txt",
    ]
    done = subprocess.run(command, cwd=root, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise DependencyInstallError(
            f"`uv export` failed (is uv.lock in step with pyproject.toml? run `uv lock`):\n"
            f"{done.stderr.strip()}"
        )
    return parse_requirements(done.stdout)


def parse_requirements(text: str) -> list[Requirement]:
    """Read ``name==version [; marker]`` lines; anything else is a format we do not expect."""
    requirements = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;]+)\s*(;.*)?", line)
        if match is None:
            raise DependencyInstallError(f"unexpected line in `uv export` output: {line!r}")
        requirements.append(Requirement(normalize(match[1]), match[2], line))
    return requirements


def lock_graph(root: Path) -> dict[str, set[str]]:
    """Package -> the packages it needs (extras included, markers ignored), from uv.lock.

    Ignoring markers over-approximates the graph, which is what a partition wants: a package
    that might be needed by the core stays in the core layer. The real, marker-evaluated set
    comes from ``uv export`` and uv's install for the Lambda platform.
    """
    lock = tomllib.loads((root / "uv.lock").read_text())
    packages: dict[str, dict] = {}
    for package in lock["package"]:
        packages.setdefault(normalize(package["name"]), {}).update(package)
    graph: dict[str, set[str]] = {}
    for name, package in packages.items():
        edges = graph.setdefault(name, set())
        for dependency in package.get("dependencies", []):
            edges.add(normalize(dependency["name"]))
            # ``psycopg[binary]`` also needs what psycopg's ``binary`` extra lists.
            target = packages.get(normalize(dependency["name"]), {})
            for extra in dependency.get("extra", []):
                optional = target.get("optional-dependencies", {}).get(extra, [])
                edges.update(normalize(d["name"]) for d in optional)
    return graph


def project_roots(root: Path) -> set[str]:
    """The core's direct dependencies plus the ``lambda`` extra, with their extras expanded."""
    lock = tomllib.loads((root / "uv.lock").read_text())
    project = next(p for p in lock["package"] if p.get("source", {}).get("editable") == ".")
    by_name = {normalize(p["name"]): p for p in lock["package"]}
    direct = list(project.get("dependencies", []))
    direct += project.get("optional-dependencies", {}).get("lambda", [])
    roots = set()
    for dependency in direct:
        name = normalize(dependency["name"])
        roots.add(name)
        for extra in dependency.get("extra", []):
            optional = by_name.get(name, {}).get("optional-dependencies", {}).get(extra, [])
            roots.update(normalize(d["name"]) for d in optional)
    return roots


def _closure(graph: dict[str, set[str]], start: Iterable[str], stop: frozenset[str]) -> set[str]:
    seen: set[str] = set()
    pending = [name for name in start if name not in stop]
    while pending:
        name = pending.pop()
        if name in seen:
            continue
        seen.add(name)
        pending.extend(d for d in graph.get(name, ()) if d not in stop and d not in seen)
    return seen


def partition(
    requirements: list[Requirement],
    graph: dict[str, set[str]],
    roots: set[str],
    *,
    include_boto3: bool = False,
) -> dict[str, list[Requirement]]:
    """Split the locked requirements into the core layer and the data layer.

    The core layer is everything reachable from the roots without passing through numpy or
    pandas; the data layer is what is left. A core package that needs numpy is an error, since
    the ingest function would then carry it.
    """
    provided = frozenset() if include_boto3 else RUNTIME_PROVIDED
    core = _closure(graph, roots - DATA_ROOTS, provided | DATA_ROOTS)
    for name in sorted(core):
        leaking = graph.get(name, set()) & DATA_ROOTS
        if leaking:
            raise LayerBuildError(
                f"{name} needs {', '.join(sorted(leaking))}, so the ingest layer would carry "
                "it; move that dependency out of the core or give ingest the data layer"
            )
    everything = _closure(graph, roots, provided)
    layers: dict[str, list[Requirement]] = {CORE_LAYER: [], DATA_LAYER: []}
    for requirement in requirements:
        if requirement.name in core:
            layers[CORE_LAYER].append(requirement)
        elif requirement.name in everything:
            layers[DATA_LAYER].append(requirement)
    return layers


def install_wheels(
    requirements: list[Requirement], target: Path, config: BuildConfig, uv: str | None = None
) -> None:
    """Install exactly these pinned packages from Lambda-platform wheels into ``target``."""
    target.mkdir(parents=True, exist_ok=True)
    requirements_file = target.parent / f"{target.parent.name}-requirements.txt"
    requirements_file.write_text("".join(f"{r.line}\n" for r in requirements))
    command = [
        uv or find_uv(),
        "pip",
        "install",
        "--quiet",
        "--target",
        str(target),
        "--python-platform",
        config.platform,
        "--python-version",
        config.python,
        "--only-binary",
        ":all:",
        "--no-deps",
        "-r",
        str(requirements_file),
    ]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    requirements_file.unlink()
    if done.returncode != 0:
        raise DependencyInstallError(
            f"installing wheels for {config.runtime} on {config.platform} failed (a package "
            f"without a wheel for that platform cannot go into a layer):\n{done.stderr.strip()}"
        )


def prune(directory: Path) -> None:
    """Drop what Lambda never runs: caches, test suites, scripts, type stubs, install records."""
    shutil.rmtree(directory / "bin", ignore_errors=True)  # console scripts
    (directory / ".lock").unlink(missing_ok=True)  # uv's install lock; layers would collide on it
    for path in sorted(directory.rglob("*"), key=lambda p: len(p.parts), reverse=True):
        if path.is_dir() and path.name in _PRUNED_DIRS:
            shutil.rmtree(path)
        elif path.is_file() and (
            path.suffix in {".pyc", ".pyi"}
            or (path.parent.name.endswith(".dist-info") and path.name in _PRUNED_DIST_INFO)
        ):
            path.unlink()


def installed_packages(directory: Path) -> dict[str, str]:
    """Name -> version of the distributions installed in ``directory``."""
    packages = {}
    for dist_info in directory.glob("*.dist-info"):
        name, _, version = dist_info.name.removesuffix(".dist-info").rpartition("-")
        packages[normalize(name)] = version
    return dict(sorted(packages.items()))


# ---------------------------------------------------------------------------------------------
# Function code


def handler_dir(root: Path, function: str) -> Path:
    return root / "lambdas" / function


def check_handlers(config: BuildConfig) -> dict[str, bool]:
    """Which functions have a handler; a missing one is an error unless allowed."""
    present = {f: (handler_dir(config.root, f) / "handler.py").is_file() for f in FUNCTION_LAYERS}
    missing = [f for f, ok in present.items() if not ok]
    if missing and not config.allow_missing_handlers:
        paths = ", ".join(f"lambdas/{f}/handler.py" for f in missing)
        raise MissingHandlerError(
            f"{paths} missing: there is no handler to package for "
            f"{', '.join(missing)}. Write it, or pass --allow-missing-handlers to build the "
            "layers and the core package without it."
        )
    if not (config.root / "src" / "pricebot" / "__init__.py").is_file():
        raise LayerBuildError(f"no core package at {config.root / 'src' / 'pricebot'}")
    return present


def stage_function(config: BuildConfig, function: str, stage: Path) -> None:
    """Lay out a function's code as Lambda sees it: ``pricebot/`` and ``lambdas/<function>/``."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "tests", ".pytest_cache")
    shutil.copytree(config.root / "src" / "pricebot", stage / "pricebot", ignore=ignore)
    source = handler_dir(config.root, function)
    if source.is_dir():
        shutil.copytree(source, stage / "lambdas" / function, ignore=ignore)
        package_init = config.root / "lambdas" / "__init__.py"
        if package_init.is_file():
            shutil.copy2(package_init, stage / "lambdas" / "__init__.py")


# ---------------------------------------------------------------------------------------------
# Bytecode, zips and sizes


def find_bytecode_python(config: BuildConfig) -> str | None:
    """A working CPython of the target version, to precompile with (None: there is none).

    Looked for: the one given, ``python3.N`` on PATH, what ``uv python find`` knows, and pyenv's
    installed versions.
    """
    if config.bytecode_python is not None:
        candidates = [config.bytecode_python] if config.bytecode_python else []
    else:
        candidates = _interpreters(config.python)
    for candidate in candidates:
        if not candidate:
            continue
        probe = subprocess.run(
            [candidate, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
            capture_output=True,
            text=True,
            check=False,
        )
        if probe.returncode == 0 and probe.stdout.strip() == config.python:
            return candidate
    if config.bytecode_python:
        raise LayerBuildError(
            f"--bytecode-python {config.bytecode_python} is not a working Python {config.python}"
        )
    return None


def _interpreters(version: str) -> list[str | None]:
    """Where a CPython ``version`` may be: PATH, uv's discovery, pyenv's versions directory."""
    candidates = [shutil.which(f"python{version}")]
    uv = shutil.which("uv")
    if uv:
        found = subprocess.run(
            [uv, "python", "find", "--no-project", version],
            capture_output=True,
            text=True,
            check=False,
        )
        candidates.append(found.stdout.strip() if found.returncode == 0 else None)
    # pyenv keeps versions it has not put on PATH under $PYENV_ROOT/versions.
    pyenv_root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv"))
    installed = sorted(pyenv_root.glob(f"versions/{version}.*/bin/python{version}"))
    return candidates + [str(path) for path in reversed(installed)]


def compile_bytecode(python: str, directory: Path) -> None:
    """Precompile with the target interpreter; hash-checked .pyc ignore the zip's timestamps."""
    done = subprocess.run(
        [
            python,
            "-m",
            "compileall",
            "-q",
            "-j",
            "0",
            "--invalidation-mode",
            "unchecked-hash",
            str(directory),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise LayerBuildError(f"compiling bytecode in {directory} failed:\n{done.stdout}")


def _files(directory: Path) -> Iterator[tuple[Path, str]]:
    for path in sorted(directory.rglob("*")):
        if path.is_file() and not path.is_symlink():
            yield path, path.relative_to(directory).as_posix()


def write_zip(directory: Path, destination: Path) -> None:
    """Zip a directory deterministically: sorted entries, fixed times, plain permissions."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(destination, "w", zipfile.ZIP_DEFLATED, compresslevel=6) as archive:
        for path, name in _files(directory):
            info = zipfile.ZipInfo(name, date_time=_ZIP_TIME)
            executable = os.access(path, os.X_OK) and path.suffix != ".py"
            info.external_attr = (0o100755 if executable else 0o100644) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            with path.open("rb") as source, archive.open(info, "w") as target:
                shutil.copyfileobj(source, target, 1 << 20)


def measure(name: str, kind: Literal["layer", "function"], path: Path) -> Artifact:
    """Sizes and hashes of a built zip."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    with zipfile.ZipFile(path) as archive:
        infos = archive.infolist()
    return Artifact(
        name=name,
        kind=kind,
        path=path,
        zipped_bytes=path.stat().st_size,
        unzipped_bytes=sum(i.file_size for i in infos),
        sha256=digest.hexdigest(),
        sha256_base64=base64.b64encode(digest.digest()).decode(),
        files=len(infos),
    )


def check_zip_limit(artifact: Artifact, limit: int) -> None:
    if artifact.zipped_bytes > limit:
        raise SizeLimitError(
            [
                f"{artifact.name} is {_mb(artifact.zipped_bytes)} zipped, over the "
                f"{_mb(limit)} limit for a Lambda zip"
            ]
        )


def limit_violations(result: BuildResult) -> list[str]:
    """Every artifact over the zip limit and every function over the unzipped limit."""
    config = result.config
    violations = [
        f"{a.name} is {_mb(a.zipped_bytes)} zipped, over the {_mb(config.zip_limit_bytes)} "
        "limit for a Lambda zip"
        for a in result.artifacts.values()
        if a.zipped_bytes > config.zip_limit_bytes
    ]
    for function in FUNCTION_LAYERS:
        if f"{function}.zip" not in result.artifacts:
            continue
        total = result.function_unzipped_bytes(function)
        if total > config.unzipped_limit_bytes:
            parts = " + ".join((f"{function}.zip", *result.artifacts[f"{function}.zip"].layers))
            violations.append(
                f"function {function} ({parts}) is {_mb(total)} unzipped, over Lambda's "
                f"{_mb(config.unzipped_limit_bytes)} limit for a function with its layers"
            )
    return violations


def _mb(size: int) -> str:
    return f"{size / MIB:.2f} MB"


# ---------------------------------------------------------------------------------------------
# The build


Step = Callable[[str], None]


def build(config: BuildConfig, step: Step | None = None) -> BuildResult:
    """Build every layer and function zip under ``config.out`` and write ``manifest.json``.

    ``step`` is told what is happening (for progress output). Raises :class:`LayerBuildError`
    (or a subclass) with a message naming the problem; on failure no manifest is left behind,
    so nothing downstream deploys a half-built set.
    """
    started = time.perf_counter()
    report = step or (lambda _message: None)
    out = config.out
    out.mkdir(parents=True, exist_ok=True)
    manifest_path = out / "manifest.json"
    manifest_path.unlink(missing_ok=True)
    stage_root = out / ".stage"
    shutil.rmtree(stage_root, ignore_errors=True)

    present = check_handlers(config)
    bytecode_python = find_bytecode_python(config)
    artifacts: dict[str, Artifact] = {}
    try:
        for function, layers in FUNCTION_LAYERS.items():
            report(f"function {function}")
            stage = stage_root / function
            stage_function(config, function, stage)
            if bytecode_python:
                compile_bytecode(bytecode_python, stage)
            artifact = _zip(stage, out / f"{function}.zip", "function", config)
            artifact.handler = f"lambdas.{function}.handler.lambda_handler"
            artifact.handler_present = present[function]
            artifact.layers = tuple(f"{layer}.zip" for layer in layers)
            artifacts[artifact.name] = artifact

        report("resolving the locked dependencies")
        uv = find_uv()
        requirements = export_requirements(config.root, uv)
        split = partition(
            requirements,
            lock_graph(config.root),
            project_roots(config.root),
            include_boto3=config.include_boto3,
        )
        for layer, layer_requirements in split.items():
            report(f"{layer}: {len(layer_requirements)} packages for {config.platform}")
            stage = stage_root / layer
            install_wheels(layer_requirements, stage / "python", config, uv)
            prune(stage / "python")
            if bytecode_python:
                compile_bytecode(bytecode_python, stage / "python")
            artifact = _zip(stage, out / f"{layer}.zip", "layer", config)
            artifact.packages = installed_packages(stage / "python")
            artifacts[artifact.name] = artifact
    finally:
        shutil.rmtree(stage_root, ignore_errors=True)

    result = BuildResult(
        config=config,
        artifacts=artifacts,
        manifest_path=manifest_path,
        bytecode=bytecode_python is not None,
        seconds=time.perf_counter() - started,
    )
    violations = limit_violations(result)
    if violations:
        raise SizeLimitError(violations)
    write_manifest(result)
    return result


def _zip(stage: Path, destination: Path, kind: Literal["layer", "function"], config: BuildConfig):
    write_zip(stage, destination)
    artifact = measure(destination.name, kind, destination)
    check_zip_limit(artifact, config.zip_limit_bytes)
    return artifact


def write_manifest(result: BuildResult) -> None:
    """``manifest.json``: what the infrastructure deploys and CI checks, paths relative to it."""
    config = result.config
    artifacts = {}
    for name, artifact in result.artifacts.items():
        entry = asdict(artifact)
        entry["path"] = artifact.path.name
        entry["layers"] = list(artifact.layers)
        if artifact.kind == "layer":
            for key in ("handler", "handler_present", "layers"):
                entry.pop(key)
        else:
            entry.pop("packages")
        artifacts[name] = entry
    document = {
        "runtime": config.runtime,
        "python": config.python,
        "arch": config.arch,
        "platform": config.platform,
        "bytecode": result.bytecode,
        "boto3": "bundled" if config.include_boto3 else "runtime",
        "built_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "limits": {
            "zip_bytes": config.zip_limit_bytes,
            "function_unzipped_bytes": config.unzipped_limit_bytes,
        },
        "artifacts": artifacts,
        "functions": {
            function: {
                "zip": f"{function}.zip",
                "handler": result.artifacts[f"{function}.zip"].handler,
                "layers": [f"{layer}.zip" for layer in layers],
                "unzipped_bytes_with_layers": result.function_unzipped_bytes(function),
            }
            for function, layers in FUNCTION_LAYERS.items()
        },
    }
    result.manifest_path.write_text(json.dumps(document, indent=2) + "\n")
