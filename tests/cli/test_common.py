"""cli._common.input_errors: every command's reading errors said one way (exit 2)."""

from __future__ import annotations

import pytest
import typer

from prefkit.cli._common import input_errors
from prefkit.data.errors import InvalidInputError, InvalidRow


def _exit(capsys: pytest.CaptureFixture[str], error: Exception, **kwargs: object
          ) -> tuple[int, str]:
    with pytest.raises(typer.Exit) as info, input_errors(**kwargs):  # type: ignore[arg-type]
        raise error
    return info.value.exit_code, " ".join(capsys.readouterr().err.split())


def test_invalid_rows_print_file_line_field_and_the_flag(capsys) -> None:
    err = InvalidInputError([InvalidRow("v.csv", 3, "winner", "x", "unknown winner 'x'",
                                        "write a, b or tie")])
    code, text = _exit(capsys, err, what="--task v.csv")
    assert code == 2
    assert "v.csv" in text and "line 3" in text and "unknown winner 'x'" in text
    assert "--skip-invalid" in text
    # a flag heads the problems (which of --task / --watch gave the file); a path does not
    assert text.startswith("error: --task v.csv: 1 problem in v.csv")
    code, text = _exit(capsys, err, what="v.csv")
    assert text.startswith("error: 1 problem in v.csv")


def test_other_errors_are_prefixed_with_what(capsys) -> None:
    assert _exit(capsys, ValueError("bad value"), what="data.csv") == (
        2, "error: data.csv: bad value")
    assert _exit(capsys, KeyError("col"), what="data.csv") == (2, "error: data.csv: 'col'")
    assert _exit(capsys, ValueError("bad value")) == (2, "error: bad value")
    assert _exit(capsys, FileNotFoundError("gone"), what="--answers",
                 also=(FileNotFoundError,)) == (2, "error: --answers: gone")


def test_errors_not_named_pass_through() -> None:
    with pytest.raises(ValueError, match="not caught"), input_errors(also=()):
        raise ValueError("not caught")
    with pytest.raises(FileNotFoundError), input_errors("x"):  # default: ValueError, KeyError
        raise FileNotFoundError("x")


def test_interrupt_exits_even_when_the_unwinding_hangs() -> None:
    """Ctrl-C inside interrupt_exits: if what runs after KeyboardInterrupt hangs (an event
    loop's clean-up awaiting a connection that never answers), the process still ends with
    130 and the message within the grace period."""
    import signal
    import subprocess
    import sys
    import time

    code = ("import time, sys\n"
            "from prefkit.cli._common import interrupt_exits\n"
            "try:\n"
            "    with interrupt_exits('stopped: rerun to resume', grace=1.0):\n"
            "        print('ready', flush=True); time.sleep(60)\n"
            "except KeyboardInterrupt:\n"
            "    time.sleep(60)  # the unwinding hangs\n")
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().strip() == "ready"
        t0 = time.monotonic()
        p.send_signal(signal.SIGINT)
        _, err = p.communicate(timeout=30)
        assert p.returncode == 130 and "stopped: rerun to resume" in err
        assert time.monotonic() - t0 < 20
    finally:
        p.kill() if p.poll() is None else None
