"""The CLI root: one line on stderr and a meaningful exit code, whatever goes wrong."""

import typer

from esremote import cli


def _with_command(monkeypatch, fn):
    probe = typer.Typer()
    probe.command("probe")(fn)
    probe.command("other")(lambda: None)
    monkeypatch.setitem(cli.GROUPS, "probe", ("tests.test_cli_root", "a test group"))
    monkeypatch.setattr(cli, "app", typer.Typer())
    global app
    app = probe


def test_exit_codes_from_typer_exit_are_kept(monkeypatch, capsys):
    def exits():
        cli.fail("the inventory is missing", code=3)

    _with_command(monkeypatch, exits)
    assert cli.main(["probe", "probe"]) == 3
    assert capsys.readouterr().err == "esremote: error: the inventory is missing\n"


def test_usage_errors_are_one_line_and_exit_2(capsys):
    assert cli.main(["keystore", "list"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Missing argument" in err


def test_unexpected_exceptions_do_not_show_a_traceback(monkeypatch, capsys):
    def breaks():
        raise KeyError("boom")

    _with_command(monkeypatch, breaks)
    monkeypatch.delenv("ESREMOTE_DEBUG", raising=False)
    assert cli.main(["probe", "probe"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.startswith("esremote: internal error: KeyError")
