"""What a wheel installs: every package of the source tree, and configs/ as the data package ``vlart_configs``."""

import tomllib

from tests.conftest import REPO

PACKAGES = ("bridge", "envs", "policies", "runtime")


def test_pyproject_lists_every_package_of_the_tree():
    setuptools = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    found = {".".join(init.parent.relative_to(REPO).parts) for package in PACKAGES
             for init in (REPO / package).rglob("__init__.py")}
    assert set(setuptools["packages"]) == found | {"vlart_configs"}
    assert setuptools["package-dir"] == {"vlart_configs": "configs"}
