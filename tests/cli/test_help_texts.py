"""What the CLI and the README tell a user: help texts, messages and the README's commands."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
TINY = ["--set", "train.epochs=1", "--set", "train.batch_size=256", "-q"]


def test_train_help_names_the_config_out_key(cli):
    result = cli("train", "--help")
    assert result.rc == 0, str(result)
    text = " ".join(result.stdout.split())
    assert "(default: out)" not in text
    assert "the config's out key" in text and "./runs" in text


def test_debug_is_in_the_top_level_help(cli):
    result = cli("--help")
    assert result.rc == 0, str(result)
    assert "--debug" in result.stdout
    assert "traceback" in " ".join(result.stdout.split())


def test_predict_to_a_file_says_what_it_wrote(cli, trained_run, tmp_path):
    names = json.loads((trained_run / "data.json").read_text())["feature_names"]
    inputs = tmp_path / "new.csv"
    inputs.write_text(",".join(names) + "\n" + "\n".join([",".join(["0"] * len(names))] * 5) + "\n")
    for suffix in (".csv", ".json"):
        output = tmp_path / f"preds{suffix}"
        result = cli("predict", trained_run, inputs, "-o", output)
        assert result.rc == 0, str(result)
        assert result.stdout.strip() == f"wrote 5 predictions to {output}", str(result)
        assert output.is_file()


def test_profile_prints_no_usdt_lines(cli, tiny_config, tmp_path):
    result = cli("train", tiny_config, "--out", tmp_path, *TINY, "--profile")
    assert result.rc == 0, str(result)
    assert "USDT" not in result.output, str(result)


def test_pretraining_from_a_config_is_an_info_line(cli, tiny_config, tmp_path):
    tiny = yaml.safe_load(tiny_config.read_text())
    pre = tmp_path / "pre.yaml"
    pre.write_text(yaml.safe_dump(tiny | {"name": "pre"}, sort_keys=False))
    main = tmp_path / "main.yaml"
    config = tiny | {"name": "main", "model": tiny["model"] | {"pretrained": str(pre)}}
    main.write_text(yaml.safe_dump(config, sort_keys=False))
    result = cli("train", main, "--out", tmp_path / "runs", *TINY)
    assert result.rc == 0, str(result)
    lines = [line for line in result.stderr.splitlines() if "pretraining" in line]
    assert lines and lines[0].startswith("pretraining "), str(result)
    assert not any(line.startswith("warning:") for line in lines), str(result)


def test_readme_runs_are_made_by_examples():
    """Every ``runs/NAME`` the README's commands read is a run some example config writes."""
    made = set()
    for path in (ROOT / "examples").glob("*.yaml"):
        made.add((yaml.safe_load(path.read_text()) or {}).get("name", path.stem))
    named = set(re.findall(r"^deepworks \w+ (?:--resume )?runs/([\w.-]+)", README, re.M))
    assert named, "the README names no runs"
    assert named <= made, f"no example makes {sorted(named - made)}"


def test_readme_names_the_digits_columns_predict_needs():
    from deepworks.data.pipeline import load_raw

    names = load_raw("digits").feature_names
    assert len(names) == 64
    assert f"`{names[0]}` … `{names[-1]}`" in README
