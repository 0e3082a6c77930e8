from pathlib import Path

import pytest

from policies.config import PolicyConfig, load_config
from runtime.core.yaml_config import ConfigError, from_dict
from tests.conftest import CONFIGS, TINY


@pytest.mark.parametrize("name", ["cogact-tiny", "cogact-small", "cogact-base"])
def test_shipped_configs_load(name):
    config = load_config(CONFIGS / f"{name}.yaml")
    assert config.name == name
    assert config.vision.num_patches == 256
    assert config.sampler.num_inference_steps == 10 and config.sampler.cfg_scale == 1.5
    assert config.action_head.chunk_length == 16 and config.action_head.action_dim == 7


def test_base_config_is_cogact_base_shape():
    config = load_config(CONFIGS / "cogact-base.yaml")
    assert config.vision.feature_dim == 2176
    assert (config.llm.hidden_size, config.llm.num_layers, config.llm.intermediate_size) == (4096, 32, 11008)
    assert config.llm.vocab_size == 32064
    assert (config.action_head.depth, config.action_head.hidden_size, config.action_head.num_heads) == (12, 768, 12)


def test_relative_paths_resolve_against_the_yaml_file():
    config = load_config(TINY)
    assert config.resolve_path(config.actions.statistics) == (CONFIGS / "../statistics/oxe_simpler.json")
    assert config.resolve_path(config.actions.statistics).is_file()


def test_unknown_key_is_named(tmp_path: Path):
    path = tmp_path / "bad.yaml"
    path.write_text(TINY.read_text().replace("  num_layers: 2", "  num_layers: 2\n  num_layerz: 3"))
    with pytest.raises(ConfigError, match=r"llm\.num_layerz"):
        load_config(path)


def test_unknown_top_level_key_lists_expected():
    with pytest.raises(ConfigError, match="unknown config key.*vison.*expected one of: action_head, actions"):
        from_dict(PolicyConfig, {"vison": {}})


def test_wrong_type_is_named():
    with pytest.raises(ConfigError, match=r"llm\.num_layers must be int"):
        from_dict(PolicyConfig, {"llm": {"num_layers": "two"}})


def test_dit_size_conflict():
    with pytest.raises(ConfigError, match="contradicts action_head.size=B"):
        from_dict(PolicyConfig, {"action_head": {"size": "B", "depth": 3}})
    with pytest.raises(ConfigError, match="action_head.size must be one of"):
        from_dict(PolicyConfig, {"action_head": {"size": "XL"}})


def test_missing_file_and_bad_yaml(tmp_path: Path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("llm: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)


def test_overrides_set_nested_keys_and_are_checked():
    config = load_config(TINY, ["runtime.dtype=bfloat16", "llm.num_layers=3", "actions.unnorm_key=fractal20220817_data"])
    assert config.runtime.dtype == "bfloat16" and config.llm.num_layers == 3
    assert config.actions.unnorm_key == "fractal20220817_data"
    with pytest.raises(ConfigError, match=r"runtime\.dtyp"):
        load_config(TINY, ["runtime.dtyp=bfloat16"])
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        load_config(TINY, ["runtime.dtype"])
    with pytest.raises(ConfigError, match="name is not a section"):
        load_config(TINY, ["name.x=1"])
