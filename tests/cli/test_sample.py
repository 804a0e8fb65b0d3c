"""``deepworks sample``: text from a trained language model; bad options are one line."""

from __future__ import annotations

import pytest

import deepworks as dw
from deepworks.run import sample_run


@pytest.fixture(scope="module")
def lm_run(tmp_path_factory):
    config = {
        "name": "tiny_lm",
        "data": {"name": "stdlib_code", "max_chars": 20_000, "max_file_chars": 1_500, "bptt": 16},
        "model": {"name": "rnn", "cell": "lstm", "output": "sequence", "hidden_size": 16,
                  "embedding_dim": 8},
        "task": {"name": "language_model"},
        "train": {"epochs": 1, "batch_size": 32, "progress": False, "device": "cpu"},
    }  # fmt: skip
    return dw.train(config, out=tmp_path_factory.mktemp("lm")).dir


def test_sample_continues_the_prompt_reproducibly(cli, lm_run):
    rc, out, err = cli("sample", lm_run, "--prompt", "def ", "--tokens", "40", "--seed", "3")
    assert rc == 0, err
    assert out.startswith("def ")
    expected = sample_run(lm_run, "def ", 40, 0.8, None, None, 3)
    assert out.rstrip("\n") == expected.rstrip("\n")
    rc, again, _ = cli("sample", lm_run, "--prompt", "def ", "--tokens", "40", "--seed", "3")
    assert again == out


def test_greedy_sampling_ignores_the_seed(cli, lm_run):
    outs = [
        cli("sample", lm_run, "-p", "import ", "-n", "20", "--temperature", "0", "--seed", s).stdout
        for s in ("0", "1")
    ]
    assert outs[0] == outs[1] and outs[0].startswith("import ")


def test_several_samples(cli, lm_run):
    rc, out, err = cli("sample", lm_run, "-n", "10", "--samples", "2", "--top-k", "5")
    assert rc == 0, err
    assert "--- sample 1 (seed 0) ---" in out and "--- sample 2 (seed 1) ---" in out


@pytest.mark.parametrize(
    "option, message",
    [
        (("--top-p", "1.5"), "--top-p 1.5: must be in (0, 1]"),
        (("--top-k", "0"), "--top-k 0: must be at least 1"),
        (("--temperature", "-1"), "--temperature -1.0: must be >= 0"),
        (("--tokens", "0"), "--tokens 0: generate at least 1 token"),
    ],
)
def test_bad_options_are_one_line(cli, lm_run, option, message):
    rc, _, err = cli("sample", lm_run, *option)
    assert rc == 2
    assert message in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_a_run_that_is_not_a_language_model(cli, trained_run):
    rc, _, err = cli("sample", trained_run, "-p", "x")
    assert rc == 2
    assert "not a language-model run" in err and "Traceback" not in err
