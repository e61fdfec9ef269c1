"""The Dockerfile, checked without Docker: targets, what it copies, what its images run.

There is no Docker engine in the test run, so the file is read as data: every ``COPY`` source
must exist in the repository and survive .dockerignore, the wheel stage must copy every package
the wheel is built from, each role's target must exist and run as an unprivileged user, and the
command each image runs must be a real ``pricebot`` command with real options. The checks are
also run on broken copies of the file, to show each of them fails.
"""

from __future__ import annotations

import re
import shlex
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.infra.cli import command_problems

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
ROLES = {"job": ("train", "aws"), "monitoring": ("monitor", "aws")}


@dataclass
class Stage:
    name: str
    base: str
    instructions: list[tuple[str, str]] = field(default_factory=list)


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    joined = re.sub(r"\\\n", " ", text)
    out = []
    for line in joined.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        word, _, rest = line.partition(" ")
        out.append((word.upper(), rest.strip()))
    return out


def stages(text: str) -> dict[str, Stage]:
    found: dict[str, Stage] = {}
    current: Stage | None = None
    for word, rest in instructions(text):
        if word == "FROM":
            parts = rest.split()
            name = parts[2] if len(parts) >= 3 and parts[1].upper() == "AS" else f"#{len(found)}"
            current = found[name] = Stage(name, parts[0])
        elif current is not None:
            current.instructions.append((word, rest))
    return found


def dockerignore_excludes(root: Path) -> callable:
    """Docker's rule: patterns in order, a ``!`` pattern re-includes, the last match wins; a
    pattern matching a directory matches everything under it."""
    rules = []
    for line in (root / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = line.lstrip("!").strip("/")
        regex = re.escape(pattern).replace(r"\*\*", ".*").replace(r"\*", "[^/]*")
        rules.append((negate, re.compile(rf"{regex}(/.*)?")))

    def excluded(path: str) -> bool:
        verdict = False
        for negate, regex in rules:
            if regex.fullmatch(path):
                verdict = not negate
        return verdict

    return excluded


def json_form(arguments: str) -> list[str]:
    import json

    return json.loads(arguments) if arguments.startswith("[") else shlex.split(arguments)


def effective_user(all_stages: dict[str, Stage], name: str) -> str:
    stage = all_stages[name]
    users = [rest for word, rest in stage.instructions if word == "USER"]
    if users:
        return users[-1]
    return effective_user(all_stages, stage.base) if stage.base in all_stages else "root"


def last(all_stages: dict[str, Stage], name: str, word: str) -> str | None:
    stage = all_stages[name]
    found = [rest for w, rest in stage.instructions if w == word]
    if found:
        return found[-1]
    return last(all_stages, stage.base, word) if stage.base in all_stages else None


def dockerfile_problems(text: str, root: Path = ROOT) -> list[str]:
    """Everything wrong with the Dockerfile ``text``, as sentences (empty when it is right)."""
    problems: list[str] = []
    all_stages = stages(text)
    excluded = dockerignore_excludes(root)
    pyproject = tomllib.loads((root / "pyproject.toml").read_text())
    scripts = pyproject["project"]["scripts"]
    extras = set(pyproject["project"]["optional-dependencies"])

    for role in ROLES:
        if role not in all_stages:
            problems.append(f"no target {role!r}")
    for stage in all_stages.values():
        for word, rest in stage.instructions:
            if word not in ("COPY", "ADD"):
                continue
            args = shlex.split(rest)
            flags = [a for a in args if a.startswith("--")]
            paths = [a for a in args if not a.startswith("--")]
            source_stage = next(
                (f.split("=", 1)[1] for f in flags if f.startswith("--from=")), None
            )
            if source_stage is not None:
                if source_stage not in all_stages:
                    problems.append(f"{stage.name}: COPY --from={source_stage}: no such stage")
                continue
            for source in paths[:-1]:
                path = root / source
                if not path.exists():
                    problems.append(f"{stage.name}: COPY {source}: not in the repository")
                    continue
                files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
                files = [f for f in files if "__pycache__" not in f.parts]
                kept = [f for f in files if not excluded(f.relative_to(root).as_posix())]
                if len(kept) < len(files):
                    problems.append(f"{stage.name}: COPY {source}: .dockerignore drops some of it")
    if "wheel" in all_stages:
        copied = {
            shlex.split(rest)[0].rstrip("/")
            for word, rest in all_stages["wheel"].instructions
            if word == "COPY" and "--from" not in rest
        }
        wheel = pyproject["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"]
        for package in wheel:
            if package not in copied:
                problems.append(f"the wheel is built from {package}, which the wheel stage lacks")
    else:
        problems.append("no wheel stage")
    if re.search(r"--all-extras|--extra[ =]dev\b|--group[ =]dev\b", text):
        problems.append("an image installs the dev extra")
    for role, wanted in ROLES.items():
        if role not in all_stages:
            continue
        user = effective_user(all_stages, role)
        if user.split(":")[0] in ("root", "0"):
            problems.append(f"{role} runs as root")
        environment = f"{role}-environment"
        exported = " ".join(
            rest
            for w, rest in all_stages.get(environment, Stage("", "")).instructions
            if w == "RUN"
        )
        for extra in wanted:
            if extra not in extras:
                problems.append(f"pyproject has no extra {extra!r}")
            if f"--extra {extra}" not in exported:
                problems.append(f"{role}: its environment does not install the {extra} extra")
        entrypoint = last(all_stages, role, "ENTRYPOINT")
        cmd = last(all_stages, role, "CMD")
        if entrypoint is None or json_form(entrypoint)[0] not in scripts:
            problems.append(f"{role}: the entrypoint is not one of the project's scripts {scripts}")
            continue
        problems += [f"{role}: {p}" for p in command_problems(json_form(cmd or "[]"))]
    return problems


def test_the_dockerfile_is_right() -> None:
    assert dockerfile_problems(DOCKERFILE.read_text()) == []


def test_the_images_run_the_commands_the_task_definitions_assume() -> None:
    all_stages = stages(DOCKERFILE.read_text())
    assert json_form(last(all_stages, "monitoring", "CMD")) == ["monitor", "--host", "0.0.0.0"]
    assert json_form(last(all_stages, "job", "ENTRYPOINT")) == ["pricebot"]
    assert json_form(last(all_stages, "monitoring", "ENTRYPOINT")) == ["pricebot"]


@pytest.mark.parametrize(
    ("old", "new", "problem"),
    [
        ("COPY pricebot_monitor ./pricebot_monitor", "COPY monitoring_app ./monitoring_app",
         "COPY monitoring_app: not in the repository"),
        ("COPY pricebot_training ./pricebot_training\n", "",
         "the wheel is built from pricebot_training, which the wheel stage lacks"),
        ('CMD ["monitor", "--host", "0.0.0.0"]', 'CMD ["monitoring", "--host", "0.0.0.0"]',
         "there is no command 'monitoring'"),
        ('CMD ["monitor", "--host", "0.0.0.0"]', 'CMD ["monitor", "--bind", "0.0.0.0"]',
         "--bind is not an option of 'monitor'"),
        ("FROM runtime AS job\n", "FROM runtime AS jobs\n", "no target 'job'"),
        ("FROM runtime AS job\nCOPY --from=job-environment /opt/venv /opt/venv\nUSER 10001:10001",
         "FROM runtime AS job\nCOPY --from=job-environment /opt/venv /opt/venv\nUSER root",
         "job runs as root"),
        ("--extra train --extra aws", "--extra train --extra aws --extra dev",
         "installs the dev extra"),
        ("--extra monitor --extra aws", "--extra aws", "does not install the monitor extra"),
        ("COPY --from=wheel /dist /dist", "COPY --from=wheels /dist /dist",
         "COPY --from=wheels: no such stage"),
        ('ENTRYPOINT ["pricebot"]\nCMD ["--help"]', 'ENTRYPOINT ["python"]\nCMD ["--help"]',
         "the entrypoint is not one of the project's scripts"),
    ],
)  # fmt: skip
def test_each_check_fails_on_a_broken_dockerfile(old: str, new: str, problem: str) -> None:
    # Given the Dockerfile with one thing broken
    text = DOCKERFILE.read_text()
    assert old in text
    broken = text.replace(old, new, 1)
    # Then the check names it
    problems = dockerfile_problems(broken)
    assert any(problem in p for p in problems), problems


def test_a_dockerignore_that_drops_a_copied_file_is_caught(tmp_path: Path) -> None:
    # Given a repository whose .dockerignore no longer lets one package through
    for name in ("pyproject.toml", "uv.lock", "README.md", "Dockerfile"):
        (tmp_path / name).write_text((ROOT / name).read_text())
    for package in ("src/pricebot", "pricebot_cli", "pricebot_exchange", "pricebot_local",
                    "pricebot_monitor", "pricebot_service", "pricebot_training"):  # fmt: skip
        (tmp_path / package).mkdir(parents=True)
        (tmp_path / package / "__init__.py").write_text("")
    ignore = (ROOT / ".dockerignore").read_text().replace("!pricebot_local/**\n", "")
    (tmp_path / ".dockerignore").write_text(ignore)

    problems = dockerfile_problems(DOCKERFILE.read_text(), tmp_path)

    assert "wheel: COPY pricebot_local: .dockerignore drops some of it" in problems
