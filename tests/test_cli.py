import pytest

from engine.cli import main


def test_help_lists_subcommands(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    assert "COMMAND" in capsys.readouterr().out


def test_unknown_subcommand_exits_nonzero(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["no-such-command"])
    assert exit_info.value.code == 2


def test_a_missing_optional_package_names_its_extra(monkeypatch, capsys):
    """benchmarks.features.quiet_import lets the ModuleNotFoundError through; main turns it into one line."""
    import sys

    import benchmarks.latency
    from benchmarks.features import quiet_import

    monkeypatch.setitem(sys.modules, "pyworld", None)  # importing it now fails as if it were not installed
    monkeypatch.setattr(benchmarks.latency, "cmd", lambda args: quiet_import("pyworld"))
    assert main(["bench", "latency"]) == 1
    err = capsys.readouterr().err
    assert err == "evc: error: `evc bench` needs the 'bench' extra: pip install 'evc[bench]' (missing pyworld)\n"


def test_a_package_of_two_extras_is_named_by_the_commands_own(monkeypatch, capsys):
    """pyworld is in both 'train' (training targets) and 'bench': `evc train` names train."""
    import sys

    import training.cli_train

    monkeypatch.setitem(sys.modules, "pyworld", None)
    monkeypatch.setattr(training.cli_train, "_train", lambda args: __import__("pyworld"))
    assert main(["train", "stage1", "--config", "tiny", "--data", "x", "--out", "y"]) == 1
    assert "needs the 'train' extra: pip install 'evc[train]' (missing pyworld)" in capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["bench", "latency", "--n", "0"], "expected a positive integer, got '0'"),
    (["export", "--stage2", "a", "--vocoder", "b", "--out", "c", "--block-frames", "x"],
     "expected positive frame counts separated by commas, got 'x'"),
])
def test_counts_must_be_positive_integers(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
