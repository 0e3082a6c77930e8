"""Files shipped in configs/, found the same way in a checkout and in an installed wheel."""

import pytest

from runtime.core.resources import config_file


def test_config_file_finds_shipped_files_and_names_what_is_missing():
    assert config_file("samples", "bridge_table.png").is_file()
    assert config_file("presets").is_dir()
    with pytest.raises(FileNotFoundError, match="configs/presets/nope.yaml: not shipped with vlart"):
        config_file("presets", "nope.yaml")
    with pytest.raises(ValueError, match="expected a path inside configs/"):
        config_file()
