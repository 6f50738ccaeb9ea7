"""The benchmark stays out of the product: not in the wheel, not an installed
app, not a ``kaiwa`` subcommand (it runs from the checkout: ``python -m bench``)."""

import fnmatch
import importlib
import tomllib
from pathlib import Path

import pytest
from django.conf import settings

from kaiwa import cli

REPO = Path(__file__).resolve().parent.parent.parent


def packages_in_the_wheel() -> list[str]:
    """The packages setuptools' ``packages.find`` picks from the checkout."""
    include = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"][
        "packages"
    ]["find"]["include"]
    tops = [d for d in REPO.iterdir() if (d / "__init__.py").exists()]
    found = [
        ".".join(init.parent.relative_to(REPO).parts)
        for top in tops
        for init in top.glob("**/__init__.py")
    ]
    return [name for name in found if any(fnmatch.fnmatchcase(name, i) for i in include)]


def test_the_wheel_holds_kaiwa_and_config_but_no_benchmark():
    packages = packages_in_the_wheel()
    assert "kaiwa.chat" in packages
    assert "config" in packages
    assert not [p for p in packages if p == "bench" or p.startswith(("bench.", "kaiwa.bench"))]


def test_it_is_not_an_installed_app():
    assert not [app for app in settings.INSTALLED_APPS if "bench" in app]


def test_kaiwa_has_no_bench_command(capsys):
    with pytest.raises(SystemExit) as raised:
        cli.main(["bench"])
    assert raised.value.code == 2
    assert "invalid choice: 'bench'" in capsys.readouterr().err


def test_the_tutorial_settings_hold_no_fixed_secret():
    tutorial = importlib.import_module("bench.tutorial.settings")
    first = tutorial.SECRET_KEY
    again = importlib.reload(tutorial).SECRET_KEY
    assert again != first
    assert len(first) >= 50
