"""`ManagedProcess`: one long-running child program a test owns, started, watched and always reaped.

Shared by the control plane (etcd, kube-apiserver, ...) and by tests that run Cluster Autoscaler or the operator as
subprocesses, so every such program gets the same guarantees:

- its own session and process group (`start_new_session`), so a signal sent to it reaches whatever it started
  itself, and a Ctrl-C in the terminal reaches pytest only, which then stops it in order;
- stdout and stderr appended to one log file (kept across restarts, each start headed by a marker line) and stdin
  from /dev/null, so it never waits for a terminal;
- `stop()` sends SIGTERM to the group, waits `grace` seconds, then SIGKILLs the group; `kill()` SIGKILLs at once.
  Both reap the child before returning, so no zombie is left, and both are no-ops for a process that already ended.
- whatever is still running when the Python process exits (an uncaught exception in a script, pytest ending after
  an interrupt) is SIGKILLed by an exit handler: its own session keeps it from dying with a terminal, so nothing
  else would end it. A SIGKILLed Python process runs no handler, so this is a backstop, not a substitute for stop().

The group is signalled only while its leader has not been reaped (an exited leader is waited for with WNOWAIT, which
keeps its pid reserved), so the number signalled can never belong to an unrelated process.

    process = ManagedProcess("cluster-autoscaler", [binary, "--v=4"], tmp_path / "cluster-autoscaler.log")
    process.start()
    ...
    process.stop()
    print(process.tail(40))
"""

from __future__ import annotations

import atexit
import contextlib
import datetime
import errno
import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Final

POLL: Final = 0.02
TEXT_BUSY_RETRIES: Final = 20
"""Attempts at exec while the binary is "text file busy": a just-unpacked file can still be held open for writing
by a child another thread forked in the meantime, for the instant until that child execs."""
TAIL_WINDOW: Final = 256 * 1024
"""Bytes read from the end of a log for `tail`: many lines of even a verbose Kubernetes component."""


_STARTED: Final[set[ManagedProcess]] = set()
"""Started and not yet reaped by stop() or kill(): what the exit handler ends."""


@atexit.register
def _kill_survivors() -> None:
    for process in list(_STARTED):
        process.kill()


class ManagedProcess:
    """A child program with its own process group and log file; see the module docstring for the guarantees.

    `env` replaces the environment when given (as in `subprocess`); pass `{**os.environ, ...}` to extend it.
    A stopped process may be started again: same argv, same log file (appended to).
    """

    def __init__(
        self,
        name: str,
        argv: Sequence[str | os.PathLike[str]],
        log_path: Path,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.name = name
        self.argv = [os.fspath(argument) for argument in argv]
        self.log_path = log_path
        self.env = dict(env) if env is not None else None
        self.cwd = cwd
        self._process: subprocess.Popen[bytes] | None = None

    def __repr__(self) -> str:
        return f"ManagedProcess({self.name!r}, pid={self.pid}, alive={self.alive})"

    @property
    def pid(self) -> int | None:
        """The pid of the latest start (kept after it ended, for messages), None before the first start."""
        return None if self._process is None else self._process.pid

    @property
    def alive(self) -> bool:
        """Started and not yet exited. Reaps the child when it has exited."""
        return self._process is not None and self._process.poll() is None

    @property
    def returncode(self) -> int | None:
        """The exit status of the latest run (negative: killed by that signal), None while running or never run."""
        return None if self._process is None else self._process.poll()

    def start(self) -> None:
        """Start the program; RuntimeError when it is already running, OSError when it cannot be executed."""
        if self.alive:
            raise RuntimeError(f"{self.name} is already running (pid {self.pid})")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            stamp = datetime.datetime.now(datetime.UTC).isoformat(timespec="milliseconds")
            log.write(f"==== {stamp} starting {self.name}: {' '.join(self.argv)}\n".encode())
            log.flush()
            for attempt in range(TEXT_BUSY_RETRIES):
                try:
                    self._process = subprocess.Popen(
                        self.argv,
                        stdin=subprocess.DEVNULL,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        env=self.env,
                        cwd=self.cwd,
                        start_new_session=True,
                    )
                    _STARTED.add(self)
                    break
                except OSError as error:
                    if error.errno != errno.ETXTBSY or attempt == TEXT_BUSY_RETRIES - 1:
                        raise
                    time.sleep(0.05)

    def stop(self, grace: float = 10.0) -> int | None:
        """SIGTERM the group, SIGKILL it after `grace` seconds; reaped on return. The exit status, if it ran."""
        if self._process is None:
            return None
        if self._exited(0.0):
            return self._reap()
        self._signal_group(signal.SIGTERM)
        if not self._exited(grace):
            self._signal_group(signal.SIGKILL)
        return self._reap()

    def kill(self) -> int | None:
        """SIGKILL the group at once; reaped on return. The exit status, if it ran."""
        if self._process is None:
            return None
        self._signal_group(signal.SIGKILL)
        return self._reap()

    def wait(self, timeout: float) -> int | None:
        """Wait up to `timeout` seconds for the program to exit by itself; its exit status, or None if running."""
        if self._process is None or not self._exited(timeout):
            return None
        return self._reap()

    def tail(self, lines: int = 40) -> str:
        """The last `lines` lines of the log ("" when there is no log yet)."""
        try:
            with self.log_path.open("rb") as log:
                log.seek(0, os.SEEK_END)
                log.seek(max(0, log.tell() - TAIL_WINDOW))
                data = log.read()
        except FileNotFoundError:
            return ""
        return "\n".join(data.decode("utf-8", "replace").splitlines()[-lines:])

    def __enter__(self) -> ManagedProcess:
        self.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()

    def _exited(self, timeout: float) -> bool:
        # WNOWAIT: learn that the leader exited without reaping it, so its pid (the group id) stays ours until
        # `_reap`, and a last SIGKILL to the group can reach children it left behind.
        process = self._process
        assert process is not None
        deadline = time.monotonic() + timeout
        while True:
            if process.returncode is not None:
                return True
            try:
                if os.waitid(os.P_PID, process.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None:
                    return True
            except ChildProcessError:
                return True  # reaped elsewhere (e.g. by Popen.poll in another thread)
            if time.monotonic() >= deadline:
                return False
            time.sleep(POLL)

    def _signal_group(self, signal_number: int) -> None:
        process = self._process
        if process is None or process.returncode is not None:
            return  # reaped: the number may already belong to someone else
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal_number)

    def _reap(self) -> int | None:
        process = self._process
        assert process is not None
        if process.returncode is None:
            # The leader has exited or been SIGKILLed; its group may still hold children it started.
            self._exited(5.0)
            self._signal_group(signal.SIGKILL)
            process.wait()
        _STARTED.discard(self)
        return process.returncode
