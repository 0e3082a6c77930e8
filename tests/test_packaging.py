"""What a wheel installs: every package of the source tree, configs/ as the data package ``vlart_configs``, and, without
extras, only what the robot side needs (``.ci/run`` installs that wheel and drives a robot with it)."""

import re
import tomllib

from tests.conftest import REPO

PACKAGES = ("bridge", "envs", "policies", "runtime")


def test_pyproject_lists_every_package_of_the_tree():
    setuptools = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    found = {".".join(init.parent.relative_to(REPO).parts) for package in PACKAGES
             for init in (REPO / package).rglob("__init__.py")}
    assert set(setuptools["packages"]) == found | {"vlart_configs"}
    assert setuptools["package-dir"] == {"vlart_configs": "configs"}


def test_the_base_install_is_the_robot_sides_numpy_pyzmq_and_msgpack():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    names = {re.split(r"[<>=!~ \[;]", requirement, maxsplit=1)[0].lower() for requirement in project["dependencies"]}
    assert names == {"numpy", "pyzmq", "msgpack"}  # no torch, transformers, diffusers or pillow without an extra
