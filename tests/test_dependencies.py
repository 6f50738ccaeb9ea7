"""The dependency locks: every pin hashed, runtime apart from development."""

import itertools
import re
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PIN = re.compile(r"^([A-Za-z0-9_.-]+)==(\S+)", re.MULTILINE)


def pins(name: str) -> dict[str, str]:
    return {k.lower(): v for k, v in PIN.findall((REPO / name).read_text())}


def requirements(name: str) -> list[str]:
    """Each requirement of a lock file: its lines up to the next pin."""
    text = (REPO / name).read_text()
    starts = [m.start() for m in PIN.finditer(text)] + [len(text)]
    return [text[a:b] for a, b in itertools.pairwise(starts)]


def test_every_pin_carries_its_hashes():
    for name in ("requirements.lock", "requirements-dev.lock"):
        for requirement in requirements(name):
            assert "--hash=sha256:" in requirement, requirement.splitlines()[0]


def test_the_runtime_lock_holds_no_development_tool():
    runtime = pins("requirements.lock")
    for tool in ("pytest", "playwright", "hypothesis", "ruff", "mypy", "pip-audit"):
        assert tool not in runtime
    for tool in ("picows", "matplotlib", "py-spy", "granian", "daphne"):  # the benchmark's
        assert tool not in runtime
    for package in ("django", "channels", "django-axes", "django-rest-knox", "uvicorn"):
        assert package in runtime


def test_development_installs_the_same_runtime_versions():
    runtime, dev = pins("requirements.lock"), pins("requirements-dev.lock")
    assert {k: dev.get(k) for k in runtime} == runtime


def test_every_declared_runtime_dependency_is_locked():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    runtime = pins("requirements.lock")
    for spec in project["dependencies"]:
        name = re.match(r"[A-Za-z0-9_.-]+", spec).group(0).lower()
        assert name in runtime, spec
