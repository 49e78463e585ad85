"""requirements.lock: the exact versions the README's commands and CI install, kept true to requirements.txt.

requirements.txt holds the ranges (for people who install the package into their own environment);
requirements.lock is made from it by ``uv pip compile requirements.txt -o requirements.lock``, with the
Python, platform and torch build set in pyproject.toml. These tests fail when one file changed and the
other did not: a requirement added, dropped or narrowed without a new lock, or a lock edited by hand.
They read the files and the installed packages' metadata, nothing from the network.
"""

from __future__ import annotations

import re
import tomllib
from importlib import metadata

import pytest
from conftest import ROOT
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REFRESH = "refresh it with `uv pip compile requirements.txt -o requirements.lock` (see the README)"


def requirements() -> list[Requirement]:
    lines = (line.split("#")[0].strip() for line in (ROOT / "requirements.txt").read_text().splitlines())
    return [Requirement(line) for line in lines if line]


def locked() -> dict[str, str]:
    """The lock's pins: canonical name -> version."""
    pins = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        match = re.fullmatch(r"([A-Za-z0-9._-]+)==(\S+)", line.strip())
        if match:
            pins[canonicalize_name(match[1])] = match[2]
    return pins


def dependency_closure(roots: list[Requirement]) -> set[str]:
    """Every distribution the roots need in this environment, markers and extras evaluated, by their
    installed metadata."""
    seen: set[str] = set()
    todo = [(requirement, frozenset(requirement.extras)) for requirement in roots]
    while todo:
        requirement, extras = todo.pop()
        name = canonicalize_name(requirement.name)
        if name in seen and not extras:
            continue
        seen.add(name)
        try:
            needs = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            pytest.fail(f"{requirement.name} is not installed: install the lock, `pip install -r requirements.lock`")
        for line in needs:
            dependency = Requirement(line)
            environments = [{"extra": extra} for extra in extras] or [{"extra": ""}]
            if dependency.marker is None or any(dependency.marker.evaluate(env) for env in environments):
                todo.append((dependency, frozenset(dependency.extras)))
    return seen


def test_every_requirement_is_pinned_in_the_lock_within_its_range():
    pins = locked()
    for requirement in requirements():
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{requirement.name} is in requirements.txt but not in requirements.lock: {REFRESH}"
        assert requirement.specifier.contains(pins[name], prereleases=True), (
            f"requirements.lock pins {requirement.name}=={pins[name]}, outside requirements.txt's "
            f"'{requirement.specifier}': {REFRESH}")


def test_the_lock_pins_the_torch_build_that_pyproject_names():
    settings = tomllib.loads((ROOT / "pyproject.toml").read_text())
    pins = locked()
    for line in settings["tool"]["uv"]["constraint-dependencies"]:
        constraint = Requirement(line)
        assert constraint.specifier.contains(pins[canonicalize_name(constraint.name)]), (line, REFRESH)


def test_the_installed_packages_are_the_locked_versions():
    """The environment under test is the one the lock describes (so CI tests what the README installs)."""
    wrong = {}
    for name, version in locked().items():
        try:
            installed = metadata.version(name)
        except metadata.PackageNotFoundError:
            installed = None
        if installed != version:
            wrong[name] = (version, installed)
    assert not wrong, f"locked vs installed: {wrong}; install with `pip install -r requirements.lock`"


def test_the_lock_holds_exactly_what_requirements_txt_needs():
    """Nothing missing, nothing left over from a requirement since removed."""
    needed = dependency_closure(requirements())
    pins = set(locked())
    assert needed - pins == set(), f"needed but not locked: {sorted(needed - pins)}; {REFRESH}"
    assert pins - needed == set(), f"locked but no longer needed: {sorted(pins - needed)}; {REFRESH}"
