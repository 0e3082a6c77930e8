"""What every `vlart` command shares: --debug/--verbose, and --model of any kind (YAML, checkpoint, release, name)."""

import json
import logging

import pytest

import runtime.app.cli
from runtime.app.cli import build_parser
from tests.conftest import REPO, TINY, run

DEMO = REPO / "checkpoints" / "cogact-demo"
TINY_PARAMETERS = 357_703


def test_an_error_is_one_line_without_debug(capsys):
    code, _, err = run(capsys, "info", "--model", "/nonexistent.yaml")
    assert code == 2 and "Traceback" not in err
    assert err.startswith("vlart info: error: --model /nonexistent.yaml: no such file") and "--debug" in err


def test_debug_prints_the_traceback(capsys):
    code, _, err = run(capsys, "--debug", "info", "--model", "/nonexistent.yaml")
    assert code == 2
    assert "Traceback (most recent call last)" in err and "FileNotFoundError" in err
    assert "vlart info: error: --model /nonexistent.yaml: no such file" in err


@pytest.mark.parametrize("argv, level", [
    (["--debug", "info"], logging.DEBUG),
    (["--verbose", "info"], logging.INFO),
    (["info"], None),  # Python's default: warnings only
    (["serve"], logging.INFO),  # a server logs its clients
])
def test_log_level(monkeypatch, argv, level):
    configured = []
    monkeypatch.setattr(runtime.app.cli.logging, "basicConfig", lambda **kwargs: configured.append(kwargs["level"]))
    runtime.app.cli.configure_logging(build_parser().parse_args([*argv, "--model", str(TINY)]))
    assert configured == ([] if level is None else [level])


def test_verbose_and_debug_exclude_each_other(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--verbose", "--debug", "info", "--model", str(TINY)])
    assert "not allowed with argument" in capsys.readouterr().err


@pytest.mark.parametrize("model", ["cogact-tiny", str(TINY)])
def test_info_takes_a_shipped_config_by_name_or_path(capsys, model):
    code, out, err = run(capsys, "info", "--model", model, "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["model"] == "cogact-tiny" and result["parameters"]["total"] == TINY_PARAMETERS


def test_info_and_flops_take_a_checkpoint_directory(capsys):
    code, out, err = run(capsys, "info", "--model", DEMO, "--json")
    assert code == 0, err
    assert round(json.loads(out)["parameters"]["total"] / 1e6, 1) == 8.8
    code, out, err = run(capsys, "flops", "--model", DEMO, "--preset", "baseline", "--preset", "cache-only", "--json")
    assert code == 0, err
    runs = {r["preset"]: r for r in json.loads(out)["runs"]}
    assert runs["cache-only"]["ratio_vs_first"] < 1.0 == runs["baseline"]["ratio_vs_first"]


def test_info_and_flops_take_a_cogact_release(capsys, tmp_path):
    release = tmp_path / "release"
    assert run(capsys, "export", "--model", "cogact-tiny", "--format", "cogact-release", "--out", release)[0] == 0
    code, out, err = run(capsys, "info", "--model", release, "--json")
    assert code == 0, err
    assert json.loads(out)["parameters"]["total"] == TINY_PARAMETERS
    code, out, err = run(capsys, "flops", "--model", release, "--json")
    assert code == 0, err
    expected = run(capsys, "flops", "--model", "cogact-tiny", "--json")[1]
    assert json.loads(out)["runs"][0]["gflops"] == json.loads(expected)["runs"][0]["gflops"]
