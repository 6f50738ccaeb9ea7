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
    for name in ("requirements.lock", "requirements-dev.lock", "requirements-bootstrap.lock"):
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


# --- Lock completeness --------------------------------------------------------
# An installer that meets a requirement the lock does not pin (a package, or an
# extra of one, that a pinned package declares) looks it up upstream: pip 23's
# --require-hashes mode then refuses the install once a newer release exists
# (issue 20: picows asks for python-socks[asyncio]). Every requirement reached
# from the project's own, extras included, must be pinned in the same lock at a
# version that satisfies it. Markers are evaluated for this interpreter, as the
# locks are compiled for it (`make lock`: --python-version 3.11).


def lock_gaps(lock_pins: dict[str, str], roots: list[str], metadata=None) -> list[str]:
    """Requirements reached from ``roots`` that ``lock_pins`` does not satisfy.

    Args:
        lock_pins: normalized package name -> pinned version, as ``pins()`` reads a lock.
        roots: PEP 508 requirement strings (pyproject.toml's, with extras).
        metadata: name -> list of Requires-Dist strings of the pinned release;
            defaults to the installed distributions' (``make install`` installs
            exactly the dev lock).

    Returns:
        One line per gap: ``"<requirer> needs <requirement>: <why>"``; empty when
        the lock is complete.
    """
    from importlib import metadata as importlib_metadata

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    def requires(name: str) -> list[str]:
        if metadata is not None:
            return metadata.get(name, [])
        return importlib_metadata.distribution(name).requires or []

    pinned = {canonicalize_name(k): v for k, v in lock_pins.items()}
    gaps: list[str] = []
    seen: set[tuple[str, frozenset[str]]] = set()
    work = [("pyproject.toml", Requirement(r)) for r in roots]
    while work:
        requirer, req = work.pop()
        name = canonicalize_name(req.name)
        if req.marker is not None and not req.marker.evaluate({"extra": ""}):
            continue
        version = pinned.get(name)
        if version is None:
            gaps.append(f"{requirer} needs {req}: {name} is not pinned")
            continue
        if not req.specifier.contains(version, prereleases=True):
            gaps.append(f"{requirer} needs {req}: {name}=={version} does not satisfy it")
            continue
        key = (name, frozenset(req.extras))
        if key in seen:
            continue
        seen.add(key)
        for line in requires(name):
            dep = Requirement(line)
            extras = {""} | set(req.extras)
            if dep.marker is None or any(dep.marker.evaluate({"extra": e}) for e in extras):
                dep.marker = None
                work.append(
                    (f"{name}[{','.join(sorted(req.extras))}]" if req.extras else name, dep)
                )
    return sorted(set(gaps))


def project_roots(*extras: str) -> list[str]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    roots = list(project["dependencies"])
    for extra in extras:
        roots += project["optional-dependencies"][extra]
    return roots


def test_the_runtime_lock_is_complete():
    assert lock_gaps(pins("requirements.lock"), project_roots()) == []


def test_the_development_lock_is_complete_extras_included():
    assert lock_gaps(pins("requirements-dev.lock"), project_roots("dev", "bench")) == []


def test_a_lock_missing_a_pin_that_only_an_extra_reaches_fails_the_check():
    # The lock of issue 20 less python-socks, which only picows' requirement
    # python-socks[asyncio] brings in.
    dev = pins("requirements-dev.lock")
    del dev["python-socks"]
    gaps = lock_gaps(dev, project_roots("dev", "bench"))
    assert any(g.startswith("picows needs python-socks[asyncio]") for g in gaps), gaps


def test_a_pin_outside_the_requirement_fails_the_check():
    gaps = lock_gaps(
        {"a": "1.0", "b": "1.0", "c": "2.0"},
        ["a"],
        metadata={"a": ["b[x]>=1"], "b": ['c<2; extra == "x"']},
    )
    assert gaps == ["b[x] needs c<2: c==2.0 does not satisfy it"]


def test_the_bootstrap_installer_is_the_development_locks_uv():
    bootstrap = pins("requirements-bootstrap.lock")
    assert bootstrap["uv"] == pins("requirements-dev.lock")["uv"]
    for requirement in requirements("requirements-bootstrap.lock"):
        assert "--hash=sha256:" in requirement, requirement.splitlines()[0]
