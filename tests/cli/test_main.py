"""The ``mepkit`` command itself: every subcommand is there, or says why it is not."""

from mepkit_cli import main


def test_every_subcommand_is_listed():
    help_text = main.build_parser().format_help()
    for name in main.COMMANDS:
        assert name in help_text
    assert "UNAVAILABLE" not in help_text


def test_a_subcommand_that_fails_to_import_is_shown_not_dropped(monkeypatch, capsys):
    monkeypatch.setattr(main, "COMMANDS", (*main.COMMANDS, "no_such_command"))
    help_text = main.build_parser().format_help()
    assert "no_such_command" in help_text and "UNAVAILABLE (ModuleNotFoundError" in help_text
    assert main.main(["no_such_command", "file.h5"]) == 1
    err = capsys.readouterr().err
    assert "mepkit no_such_command: error: this command cannot be loaded" in err
    assert main.main(["--version"]) == 0  # the others still work
