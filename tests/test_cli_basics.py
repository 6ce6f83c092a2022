"""Every command answers --help, and the core runs without the ML extras."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
from typer.main import get_command

from reasonlab.cli import app

COMMANDS = sorted(get_command(app).commands)  # type: ignore[attr-defined]


def test_commands_registered() -> None:
    for name in ("classify", "solve", "score", "generate", "traces", "audit", "dataset"):
        assert name in COMMANDS


@pytest.mark.parametrize("command", COMMANDS)
def test_help(cli, command: str) -> None:
    assert "Usage" in cli(command, "--help").output


def test_core_runs_without_torch(tmp_path) -> None:
    """`import reasonlab.metric` and `reasonlab classify`/`score` must not need torch."""
    data = tmp_path / "d.csv"
    data.write_text(
        "id,prompt,answer\n1,\"In Alice's Wonderland, numbers are secretly converted into a "
        "different numeral system. Some examples are given below:\n11 -> XI\nNow, write the "
        'number 38 in the Wonderland numeral system.",XXXVIII\n'
    )
    preds = tmp_path / "p.csv"
    preds.write_text("id,answer\n1,XXXVIII\n")
    script = textwrap.dedent(f"""
        import sys
        for name in ("torch", "transformers", "peft", "trl", "datasets", "accelerate"):
            sys.modules[name] = None  # any import of these now raises ImportError
        import reasonlab.metric
        from reasonlab.cli import app
        for args in (["classify", {str(data)!r}], ["score", {str(preds)!r}, "--gold", {str(data)!r}]):
            try:
                app(args)
            except SystemExit as exit:
                assert exit.code in (0, None), (args, exit.code)
    """)
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    assert "numeral" in result.stdout and "100.00%" in result.stdout


def test_python_dash_m_runs_the_cli() -> None:
    """`python -m reasonlab` is what multi-GPU launchers (accelerate launch -m) call."""
    result = subprocess.run(
        [sys.executable, "-m", "reasonlab", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0 and "classify" in result.stdout
