"""The Lambda packaging: layers from Lambda-platform wheels, function zips, size guards, manifest.

One real build (x86_64, from PyPI wheels through uv's cache) serves the whole module; the tests
that must see a build fail use limits or inputs that make it fail before any layer is built.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from layers.build import (
    FUNCTION_LAYERS,
    MIB,
    BuildConfig,
    BuildResult,
    LayerBuildError,
    MissingHandlerError,
    Requirement,
    build,
    compile_bytecode,
    export_requirements,
    find_bytecode_python,
    install_wheels,
    limit_violations,
    partition,
    write_zip,
)

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> BuildResult:
    """The module's one real build (no bytecode: that is tested on its own, and costs time)."""
    out = tmp_path_factory.mktemp("layers")
    config = BuildConfig(out=out, allow_missing_handlers=True, bytecode_python="")
    return build(config)


def _names(path: Path) -> list[str]:
    with zipfile.ZipFile(path) as archive:
        return archive.namelist()


def _function_parts(result: BuildResult, function: str) -> list[Path]:
    artifact = result.artifacts[f"{function}.zip"]
    return [artifact.path] + [result.artifacts[layer].path for layer in artifact.layers]


def test_build_writes_the_four_zips_and_a_manifest_that_matches_them(built: BuildResult) -> None:
    # Given a finished build, When its manifest is read
    manifest = json.loads(built.manifest_path.read_text())

    # Then every artifact is listed with its true size and hash, and Lambda's settings
    assert set(manifest["artifacts"]) == {
        "layer-core.zip",
        "layer-data.zip",
        "ingest.zip",
        "transform.zip",
    }
    assert (manifest["runtime"], manifest["arch"]) == ("python3.12", "x86_64")
    for name, entry in manifest["artifacts"].items():
        path = built.manifest_path.parent / entry["path"]
        assert entry["zipped_bytes"] == path.stat().st_size, name
        assert entry["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest(), name
        with zipfile.ZipFile(path) as archive:
            assert entry["unzipped_bytes"] == sum(i.file_size for i in archive.infolist())
    assert manifest["functions"]["transform"]["layers"] == ["layer-core.zip", "layer-data.zip"]
    assert manifest["functions"]["ingest"]["handler"] == "lambdas.ingest.handler.lambda_handler"


def test_ingest_and_its_layer_carry_no_numpy_or_pandas(built: BuildResult) -> None:
    # Given the ingest function and the layers it is deployed with
    names = [name for path in _function_parts(built, "ingest") for name in _names(path)]

    # Then neither numpy nor pandas is in them, while the transform's data layer has both
    heavy = [n for n in names if re.match(r"python/(numpy|pandas)[/-]", n)]
    assert heavy == []
    data = _names(built.artifacts["layer-data.zip"].path)
    assert any(n.startswith("python/numpy/") for n in data)
    assert any(n.startswith("python/pandas/") for n in data)


def test_the_two_layers_never_ship_the_same_file(built: BuildResult) -> None:
    # Lambda unpacks both layers into /opt: a shared path would be overwritten by the later one
    core = set(_names(built.artifacts["layer-core.zip"].path))
    data = set(_names(built.artifacts["layer-data.zip"].path))
    assert core & data == set()


def test_handlers_import_from_the_artifacts_on_the_runtime_python(
    built: BuildResult, tmp_path: Path
) -> None:
    # Given a CPython 3.12 (the Lambda runtime's version) and the artifacts unpacked as Lambda
    # does: the function in /var/task, its layers in /opt, boto3 from the runtime
    python = find_bytecode_python(BuildConfig(python="3.12"))
    if python is None:
        pytest.skip("no Python 3.12 on this machine to import the artifacts with")
    locked = {r.name: r for r in export_requirements(ROOT)}
    runtime = tmp_path / "runtime"
    boto = ("boto3", "botocore", "s3transfer", "urllib3", "jmespath", "python-dateutil", "six")
    install_wheels([locked[name] for name in boto], runtime, BuildConfig())
    for function in FUNCTION_LAYERS:
        task, opt = tmp_path / function / "task", tmp_path / function / "opt"
        with zipfile.ZipFile(built.artifacts[f"{function}.zip"].path) as archive:
            archive.extractall(task)
        for layer in built.artifacts[f"{function}.zip"].layers:
            with zipfile.ZipFile(built.artifacts[layer].path) as archive:
                archive.extractall(opt)

        # When the handler module is imported there, with no other site-packages
        probe = (
            f"import sys, lambdas.{function}.handler as h; "
            "print(callable(h.lambda_handler), sorted({'numpy', 'pandas'} & set(sys.modules)))"
        )
        done = subprocess.run(
            [python, "-S", "-c", probe],
            env={"PYTHONPATH": f"{task}:{opt / 'python'}:{runtime}", "PATH": os.environ["PATH"]},
            capture_output=True,
            text=True,
            check=False,
        )

        # Then it imports, and the ingest handler loads neither numpy nor pandas
        assert done.returncode == 0, done.stderr[-2000:]
        expected = "[]" if function == "ingest" else None
        handler_ok, heavy = done.stdout.strip().split(" ", 1)
        assert handler_ok == "True"
        if expected is not None:
            assert heavy == expected


def test_layers_hold_exactly_the_locked_versions(built: BuildResult) -> None:
    # Given the versions uv.lock pins for the core and the lambda extra
    locked = {r.name: r.version for r in export_requirements(ROOT)}

    # Then each layer's packages are the locked versions, and boto3 is left to the runtime
    packed = {
        **built.artifacts["layer-core.zip"].packages,
        **built.artifacts["layer-data.zip"].packages,
    }
    assert packed, "the layers list no packages"
    assert {name: locked[name] for name in packed} == packed
    assert "aws-lambda-powertools" in packed
    assert "aws-xray-sdk" in packed  # the [tracer] extra
    assert not {"boto3", "botocore"} & set(packed)


def test_layer_wheels_are_built_for_lambda_python_312_on_x86_64(built: BuildResult) -> None:
    # Given the WHEEL metadata and extension modules in both layers
    for layer in ("layer-core.zip", "layer-data.zip"):
        with zipfile.ZipFile(built.artifacts[layer].path) as archive:
            tags = [
                line.removeprefix("Tag: ").strip()
                for name in archive.namelist()
                if name.endswith(".dist-info/WHEEL")
                for line in archive.read(name).decode().splitlines()
                if line.startswith("Tag: ")
            ]
            modules = [n for n in archive.namelist() if n.endswith(".so")]

        # Then every binary wheel is CPython 3.12 manylinux x86_64, and no module is for 3.11
        binary = [t for t in tags if not t.endswith("-none-any")]
        assert binary, f"{layer} has no binary wheels to check"
        wrong = [t for t in binary if not re.fullmatch(r"cp312-(cp312|abi3)-manylinux.*x86_64", t)]
        assert wrong == []
        assert all(
            m.endswith(("cpython-312-x86_64-linux-gnu.so", ".abi3.so")) or ".libs/" in m
            for m in modules
        ), [m for m in modules if "cpython-311" in m][:5]


def test_zip_over_the_limit_fails_the_build_naming_the_artifact(tmp_path: Path) -> None:
    # Given a zip limit smaller than the core package itself (0.01 MB)
    command = [sys.executable, "-m", "layers", "--out", str(tmp_path), "--zip-limit-mb", "0.01"]
    env = {**os.environ, "PRICEBOT_LAMBDA_ARCH": "x86_64"}

    # When make layers runs
    done = subprocess.run(
        [*command, "--allow-missing-handlers"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )

    # Then it exits non-zero, names the first artifact over it and the limit, writes no manifest
    assert done.returncode == 1
    message = " ".join(done.stderr.split())
    assert "ingest.zip is" in message
    assert "over the 0.01 MB limit for a Lambda zip" in message
    assert not (tmp_path / "manifest.json").exists()


def test_function_with_its_layers_over_250mb_unzipped_is_a_violation(built: BuildResult) -> None:
    # Given the real artifacts, and an unzipped limit between ingest's and transform's totals
    ingest = built.function_unzipped_bytes("ingest")
    transform = built.function_unzipped_bytes("transform")
    assert ingest < transform
    tighter = BuildConfig(
        out=built.config.out,
        allow_missing_handlers=True,
        unzipped_limit_bytes=(ingest + transform) // 2,
    )

    # When the limits are checked
    violations = limit_violations(
        BuildResult(tighter, built.artifacts, built.manifest_path, built.bytecode, 0.0)
    )

    # Then only transform is named, with the artifacts it adds up and the limit
    assert len(violations) == 1
    assert violations[0].startswith(
        "function transform (transform.zip + layer-core.zip + layer-data.zip) is"
    )
    assert f"over Lambda's {tighter.unzipped_limit_bytes / MIB:.2f} MB limit" in violations[0]


def test_the_real_build_is_within_lambdas_limits(built: BuildResult) -> None:
    # Given Lambda's real limits, Then no artifact or function is over them
    assert limit_violations(built) == []
    for function in FUNCTION_LAYERS:
        assert built.function_unzipped_bytes(function) < 250 * MIB


def test_missing_handler_is_a_clear_error(tmp_path: Path) -> None:
    # Given a project with the core package but no lambdas/ handlers
    (tmp_path / "src" / "pricebot").mkdir(parents=True)
    (tmp_path / "src" / "pricebot" / "__init__.py").write_text("")

    # When the build starts, Then it stops before building anything, naming what is missing
    with pytest.raises(MissingHandlerError, match=r"lambdas/ingest/handler\.py") as error:
        build(BuildConfig(root=tmp_path, out=tmp_path / "out"))
    assert "--allow-missing-handlers" in str(error.value)
    assert not (tmp_path / "out" / "ingest.zip").exists()


def test_unknown_architecture_is_rejected_with_the_choices() -> None:
    with pytest.raises(LayerBuildError, match=r"unknown Lambda architecture 'mips'.*x86_64, arm64"):
        BuildConfig(arch="mips")  # type: ignore[arg-type]


def test_bad_arch_setting_fails_the_cli_naming_the_variable(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "layers", "--out", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "PRICEBOT_LAMBDA_ARCH": "sparc"},
        check=False,
    )
    assert done.returncode == 1
    assert "PRICEBOT_LAMBDA_ARCH" in done.stderr
    assert not list(tmp_path.iterdir())


def test_arm64_installs_aarch64_wheels(tmp_path: Path) -> None:
    # Given one compiled package pinned as in the lock
    locked = {r.name: r for r in export_requirements(ROOT)}

    # When it is installed for arm64
    install_wheels([locked["pydantic-core"]], tmp_path / "python", BuildConfig(arch="arm64"))

    # Then its extension module is for aarch64, not this machine
    modules = [p.name for p in (tmp_path / "python").rglob("*.so")]
    assert modules
    assert all("aarch64-linux-gnu" in name for name in modules)


def test_a_core_dependency_that_needs_numpy_is_refused() -> None:
    # Given a lock where a core package depends on numpy
    graph = {"httpx": {"numpy"}, "numpy": set(), "pandas": {"numpy"}}
    requirements = [Requirement(n, "1.0", f"{n}==1.0") for n in ("httpx", "numpy", "pandas")]

    # When the layers are partitioned, Then the ingest layer is protected
    with pytest.raises(LayerBuildError, match="httpx needs numpy"):
        partition(requirements, graph, {"httpx", "pandas"})


def test_runtime_boto3_stays_out_unless_asked_for() -> None:
    graph = {"powertools": {"jmespath"}, "boto3": {"botocore", "jmespath"}, "botocore": set()}
    graph["jmespath"] = set()
    requirements = [Requirement(n, "1", f"{n}==1") for n in ("powertools", "boto3", "jmespath")]
    requirements.append(Requirement("botocore", "1", "botocore==1"))

    left = partition(requirements, graph, {"powertools", "boto3"})
    packed = partition(requirements, graph, {"powertools", "boto3"}, include_boto3=True)

    assert [r.name for r in left["layer-core"]] == ["powertools", "jmespath"]
    assert {r.name for r in packed["layer-core"]} == {"powertools", "boto3", "jmespath", "botocore"}


def test_zips_are_byte_for_byte_reproducible(tmp_path: Path) -> None:
    # Given the same directory zipped twice, a second apart in mtime
    source = tmp_path / "src"
    (source / "pkg").mkdir(parents=True)
    (source / "pkg" / "a.py").write_text("x = 1\n")
    write_zip(source, tmp_path / "one.zip")
    os.utime(source / "pkg" / "a.py", (1_700_000_000, 1_700_000_000))
    write_zip(source, tmp_path / "two.zip")

    # Then the bytes are the same, so an unchanged layer keeps its hash
    assert (tmp_path / "one.zip").read_bytes() == (tmp_path / "two.zip").read_bytes()


def test_bytecode_is_compiled_with_the_target_interpreter(tmp_path: Path) -> None:
    # Given this interpreter standing in for the runtime's version
    version = "{}.{}".format(*sys.version_info[:2])
    config = BuildConfig(python=version, bytecode_python=sys.executable)
    python = find_bytecode_python(config)
    (tmp_path / "mod.py").write_text("VALUE = 1\n")

    # When the directory is compiled
    assert python == sys.executable
    compile_bytecode(python, tmp_path)

    # Then the .pyc carries that version's tag
    tag = sys.implementation.cache_tag
    assert (tmp_path / "__pycache__" / f"mod.{tag}.pyc").is_file()


def test_a_bytecode_python_of_another_version_is_refused() -> None:
    config = BuildConfig(python="3.12", bytecode_python=sys.executable)
    if sys.version_info[:2] == (3, 12):
        pytest.skip("this interpreter is 3.12, the runtime's own version")
    with pytest.raises(LayerBuildError, match=r"is not a working Python 3\.12"):
        find_bytecode_python(config)
