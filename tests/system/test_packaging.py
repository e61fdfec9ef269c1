"""pricebot as a user installs it: the wheel, in a fresh virtual environment, outside the checkout.

What a checkout hides (the repository root on ``sys.path``) a wheel must carry itself: every
adapter the ``pricebot`` command offers, the migrations, the Bento's files.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ADAPTERS = ("cli", "exchange", "local", "monitor", "service", "training")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    uv = shutil.which("uv")
    if uv is None:
        pytest.fail("uv is not on PATH; `make setup` installs it")
    out = tmp_path_factory.mktemp("dist")
    done = subprocess.run(
        [uv, "build", "--wheel", "--out-dir", str(out), str(ROOT)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return next(out.glob("pricebot-*.whl"))


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with ``pricebot[serve,monitor]`` installed from the wheel; yields its bin/."""
    uv = shutil.which("uv")
    assert uv is not None
    venv = tmp_path_factory.mktemp("venv") / "env"
    subprocess.run([uv, "venv", "--python", sys.executable, str(venv)], check=True,
                   capture_output=True)  # fmt: skip
    done = subprocess.run(
        [uv, "pip", "install", "--python", str(venv / "bin" / "python"),
         f"{wheel}[serve,monitor]"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    return venv / "bin"


def test_the_wheel_carries_every_adapter_under_its_own_name(wheel: Path) -> None:
    # When the wheel's top-level packages are listed
    names = zipfile.ZipFile(wheel).namelist()
    tops = {name.split("/")[0] for name in names if not name.split("/")[0].endswith(".dist-info")}
    # Then the core and each adapter are there, and no generic top-level name is taken
    assert tops == {"pricebot", *(f"pricebot_{a}" for a in ADAPTERS)}
    assert "pricebot/migrations/versions/0001_initial.py" in names
    assert "pricebot_service/bentofile.yaml" in names
    assert "pricebot_monitor/app.py" in names


def test_an_installed_pricebot_reports_its_version(installed: Path, tmp_path: Path) -> None:
    done = subprocess.run(
        [str(installed / "pricebot"), "--version"],
        capture_output=True, text=True, check=False, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "pricebot 0.1.0"


def test_an_installed_pricebot_offers_the_adapters_commands(
    installed: Path, tmp_path: Path
) -> None:
    # Given an install from the wheel, run outside any checkout
    done = subprocess.run(
        [str(installed / "pricebot"), "--help"],
        capture_output=True, text=True, check=False, cwd=tmp_path,
        env={"PATH": str(installed), "COLUMNS": "200", "HOME": str(tmp_path)},
    )  # fmt: skip
    # Then the commands contributed through entry points are there
    assert done.returncode == 0, done.stderr
    for command in ("serve", "monitor", "train", "exchange", "up", "import", "db"):
        assert f" {command} " in done.stdout, f"`pricebot {command}` missing"


def test_an_installed_service_is_found_outside_the_checkout(
    installed: Path, tmp_path: Path
) -> None:
    # Given the command `pricebot serve` would exec, built by the installed package
    code = (
        "from pricebot_service.cli import service_command\n"
        "import importlib, sys\n"
        "command = service_command(3000)\n"
        "root = command[command.index('--working-dir') + 1]\n"
        "sys.path.insert(0, root)\n"
        "module = importlib.import_module(command[4].split(':')[0])\n"
        "print(root, module.__file__)\n"
    )
    done = subprocess.run(
        [str(installed / "python"), "-c", code],
        capture_output=True, text=True, check=False, cwd=tmp_path,
        env={"PATH": str(installed), "HOME": str(tmp_path), "BENTOML_DO_NOT_TRACK": "True"},
    )  # fmt: skip
    # Then it points into the install (site-packages), not at a checkout, and imports there
    assert done.returncode == 0, done.stderr[-2000:]
    root, module_file = done.stdout.split()
    assert "site-packages" in root
    assert module_file.startswith(root)
    assert not module_file.startswith(str(ROOT))
