"""The one reader of a JSON or YAML file's top-level mapping: its errors name the file and what was expected."""

import pytest

from runtime.core.yaml_config import ConfigError, read_mapping


def test_json_and_yaml_files_read_by_their_suffix(tmp_path):
    (tmp_path / "a.json").write_text('{"key": [1, 2]}')
    (tmp_path / "a.yaml").write_text("key: [1, 2]\n")
    assert read_mapping(tmp_path / "a.json", "statistics file") == read_mapping(tmp_path / "a.yaml", "config file")


@pytest.mark.parametrize(("name", "text", "message"), [
    ("missing.json", None, "statistics file not found: .*missing.json"),
    ("bad.json", "{", "bad.json: not valid JSON"),
    ("bad.yaml", "key: [", "bad.yaml: not valid YAML"),
    ("list.json", "[1, 2]", "list.json: expected a JSON object of statistics"),
])
def test_each_failure_names_the_file(tmp_path, name, text, message):
    if text is not None:
        (tmp_path / name).write_text(text)
    with pytest.raises(ConfigError, match=message):
        read_mapping(tmp_path / name, "statistics file", "a JSON object of statistics")
