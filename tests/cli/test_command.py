"""The entry points of the ``rtlink`` command (rtlink.cli.command and ``python -m
rtlink.cli``), in this process. The commands themselves run as processes in
tests/e2e/test_cli.py."""

from __future__ import annotations

import runpy
import sys

import pytest

import rtlink
from rtlink.cli import main


def test_python_m_rtlink_cli_runs_the_command(monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(sys, "argv", ["rtlink", "--version"])
    with pytest.raises(SystemExit) as exited:
        runpy.run_module("rtlink.cli", run_name="__main__", alter_sys=True)
    assert exited.value.code == 0
    assert capsys.readouterr().out == f"rtlink {rtlink.__version__}\n"


def test_usage_errors_exit_with_2_and_name_the_command(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "the following arguments are required: COMMAND" in capsys.readouterr().err
    assert main(["publish", "http://127.0.0.1:1/rt", "chat:lobby", "{"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("rtlink publish: error: DATA is not valid JSON"), err
    assert main(["publish", "http://127.0.0.1:1/rt", "chat:lobby", "NaN"]) == 2
    assert "NaN is not valid JSON" in capsys.readouterr().err
