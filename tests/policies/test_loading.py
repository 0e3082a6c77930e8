"""``--model`` resolution: paths, and the bare names of the model configs shipped in configs/models/."""

import pytest

from policies.loading import model_config, model_path, shipped_models
from runtime.core.resources import config_file
from tests.conftest import CONFIGS, TINY


def test_a_bare_name_is_a_shipped_model_config():
    assert model_path("cogact-tiny") == config_file("models", "cogact-tiny.yaml")
    assert model_path("cogact-tiny").samefile(TINY)
    assert "cogact-base" in shipped_models()
    config = model_config("cogact-tiny", overrides=["llm.num_layers=1"])
    # relative paths in the YAML resolve against the shipped file, wherever vlart is installed
    assert config.name == "cogact-tiny" and config.llm.num_layers == 1
    assert config.resolve_path(config.actions.statistics).is_file()


def test_a_path_wins_over_a_shipped_name(tmp_path, monkeypatch):
    (tmp_path / "cogact-tiny").mkdir()
    monkeypatch.chdir(tmp_path)
    assert model_path("cogact-tiny").resolve() == tmp_path / "cogact-tiny"
    assert model_path(CONFIGS / "cogact-small.yaml") == CONFIGS / "cogact-small.yaml"


def test_an_unknown_model_names_the_shipped_ones():
    with pytest.raises(FileNotFoundError, match=r"--model cogact-huge: no such file .*cogact-tiny"):
        model_path("cogact-huge")
    with pytest.raises(FileNotFoundError, match="--model missing.yaml: no such file"):
        model_path("missing.yaml")

