"""The documents outside the MkDocs site (README, model cards) link only files that are in the repository; the README
stays short. (Links inside docs/ are checked by `mkdocs build --strict` in CI.)"""

import re
from pathlib import Path

import pytest

from tests.conftest import REPO

LINK = re.compile(r"\]\(([^)\s]+)\)")
DOCUMENTS = [REPO / "README.md", *sorted((REPO / "checkpoints").glob("*/README.md"))]


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda path: path.relative_to(REPO).as_posix())
def test_every_relative_link_names_a_file_in_the_repository(document: Path):
    targets = [link.split("#")[0] for link in LINK.findall(document.read_text())]
    relative = [target for target in targets if target and "://" not in target]
    assert relative, "expected the document to link its evidence"
    missing = [target for target in relative if not (document.parent / target).exists()]
    assert not missing, f"{document.name} links files that are not in the repository: {missing}"


def test_the_readme_fits_a_newcomer():
    assert len((REPO / "README.md").read_text().splitlines()) <= 150
