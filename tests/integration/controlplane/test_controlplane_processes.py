"""`ManagedProcess`: a child program that is logged, stopped gracefully or not, and always reaped with its group.

Small shell scripts stand in for the real components; each test waits for what the script printed before acting.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from sim.controlplane import ManagedProcess
from tests.support.polling import wait_for

SHELL = "/bin/sh"


def script(tmp_path: Path, body: str, name: str = "script") -> ManagedProcess:
    return ManagedProcess(name, [SHELL, "-c", body], tmp_path / f"{name}.log")


def output(process: ManagedProcess) -> list[str]:
    """What the program printed: the log without the line ManagedProcess writes before each start."""
    return [line for line in process.log_path.read_text().splitlines() if not line.startswith("==== ")]


def printed(process: ManagedProcess, text: str) -> bool:
    return any(text in line for line in output(process))


def gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return True
    return state == "Z"  # killed, waiting for its new parent (init) to reap it


def test_a_started_program_logs_and_stops_on_sigterm(tmp_path: Path) -> None:
    process = script(tmp_path, "echo started; echo to-stderr >&2; exec sleep 60")
    assert (process.pid, process.alive, process.stop()) == (None, False, None), "nothing to stop before a start"
    process.start()
    assert process.alive
    wait_for(lambda: printed(process, "to-stderr"), what="both output streams in the log")

    assert process.stop(grace=5.0) == -signal.SIGTERM

    assert not process.alive
    assert process.returncode == -signal.SIGTERM
    assert output(process) == ["started", "to-stderr"]
    assert process.tail(lines=2).splitlines() == ["started", "to-stderr"]


def test_a_program_ignoring_sigterm_is_killed_after_the_grace(tmp_path: Path) -> None:
    process = script(tmp_path, "trap '' TERM; echo ready; while :; do sleep 0.05; done")
    process.start()
    wait_for(lambda: printed(process, "ready"), what="the script to ignore SIGTERM")

    assert process.stop(grace=0.3) == -signal.SIGKILL
    assert not process.alive


def test_stop_reaches_the_programs_own_children(tmp_path: Path) -> None:
    process = script(tmp_path, "sleep 60 & echo child $!; wait")
    process.start()
    wait_for(lambda: printed(process, "child "), what="the child's pid")
    child = int(output(process)[0].removeprefix("child "))

    process.stop(grace=5.0)

    wait_for(lambda: gone(child), what="the child of the stopped program to end")


@pytest.mark.parametrize("ending", ["stop", "kill"])
def test_ending_a_program_that_already_exited_reports_its_status(tmp_path: Path, ending: str) -> None:
    process = script(tmp_path, "exit 3")
    process.start()
    assert process.wait(timeout=5.0) == 3
    assert getattr(process, ending)() == 3
    assert getattr(process, ending)() == 3, "a second call is a no-op too"


def test_kill_is_immediate_and_reaps(tmp_path: Path) -> None:
    process = script(tmp_path, "trap '' TERM; exec sleep 60")
    process.start()
    pid = process.pid
    assert pid is not None
    assert process.kill() == -signal.SIGKILL
    assert not Path(f"/proc/{pid}").exists(), "reaped: not even a zombie is left"


def test_a_restart_appends_to_the_same_log(tmp_path: Path) -> None:
    process = script(tmp_path, "echo run")
    for _ in range(2):
        process.start()
        process.wait(timeout=5.0)
    assert process.log_path.read_text().count(" starting script: ") == 2
    assert output(process) == ["run", "run"]
    assert process.tail(lines=1) == "run"


def test_starting_a_running_program_again_is_refused(tmp_path: Path) -> None:
    with script(tmp_path, "exec sleep 60") as process, pytest.raises(RuntimeError, match="already running"):
        process.start()
    assert not process.alive, "the context manager stopped it"


def test_env_replaces_the_environment(tmp_path: Path) -> None:
    process = ManagedProcess(
        "env", [SHELL, "-c", 'echo "[$ONLY] [$HOME]"'], tmp_path / "env.log", env={"ONLY": "this"}
    )
    process.start()
    process.wait(timeout=5.0)
    assert process.tail(lines=1) == "[this] []"


def test_a_missing_executable_raises_at_start(tmp_path: Path) -> None:
    process = ManagedProcess("missing", [tmp_path / "no-such-program"], tmp_path / "missing.log")
    with pytest.raises(FileNotFoundError):
        process.start()
    assert (process.alive, process.stop()) == (False, None)
    assert os.path.exists(process.log_path), "the log says what was attempted"


def test_a_program_still_running_when_python_exits_is_killed(tmp_path: Path) -> None:
    # A script that starts a program and ends with an uncaught exception, never calling stop().
    program = (
        "import sys\n"
        "from pathlib import Path\n"
        "from sim.controlplane import ManagedProcess\n"
        f"process = ManagedProcess('sleeper', ['sleep', '60'], Path({str(tmp_path / 'sleeper.log')!r}))\n"
        "process.start()\n"
        "print(process.pid, flush=True)\n"
        "raise RuntimeError('the script fails without stopping its program')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, timeout=30, check=False,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
    )
    assert "the script fails" in result.stderr
    pid = int(result.stdout.split()[0])
    wait_for(lambda: gone(pid), what="the program to be killed when its Python process exited")
