"""A `homelab-autoscaler` subcommand in a subprocess, the way a user runs it, with its output read safely.

Its stdout is read line by line and its stderr whole, each on a helper thread that alone reads its pipe and ends at
the pipe's end of file. Waiting uses `wait`, never `communicate`, which would read stdout beside the line reader and
close the pipe under it (the reader then fails with "I/O operation on closed file").
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

EXIT_TIMEOUT = 15.0


class CliProcess:
    """`python -m homelab_autoscaler.cli ARGUMENTS` in a subprocess; `stop()` or `kill()` it before the test ends."""

    def __init__(self, *arguments: str, cwd: Path | None = None) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "homelab_autoscaler.cli", *arguments],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=cwd,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        self.lines: list[str] = []
        """The stdout lines `value_after` has read so far (shown when it fails)."""
        self._unread: queue.Queue[str] = queue.Queue()
        self._stderr: list[str] = []
        self._readers = (
            threading.Thread(target=self._read_lines, name=f"{arguments[0]}-stdout-reader"),
            threading.Thread(target=self._read_errors, name=f"{arguments[0]}-stderr-reader"),
        )
        for reader in self._readers:
            reader.start()

    def _read_lines(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._unread.put(line.rstrip("\n"))

    def _read_errors(self) -> None:
        assert self.process.stderr is not None
        self._stderr.append(self.process.stderr.read())

    def value_after(self, prefix: str, timeout: float) -> str:
        """The rest of the first stdout line (from here on) starting with `prefix`."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or (self.process.poll() is not None and self._unread.empty()):
                seen = "\n".join(self.lines)
                pytest.fail(f"no {prefix!r} line from the command (exit status {self.process.poll()}):\n{seen}")
            try:
                line = self._unread.get(timeout=min(remaining, 0.5))
            except queue.Empty:
                continue
            self.lines.append(line)
            if line.startswith(prefix):
                return line[len(prefix) :].strip()

    def wait(self, timeout: float = EXIT_TIMEOUT) -> tuple[int, str]:
        """Its exit status and everything it wrote to stderr, once it has ended by itself."""
        try:
            self.process.wait(timeout=timeout)
        finally:
            self.kill()
        return self.process.returncode, "".join(self._stderr)

    def stop(self, signal_number: int = signal.SIGINT, timeout: float = EXIT_TIMEOUT) -> tuple[int, str]:
        """Send `signal_number` (Ctrl-C by default); its exit status and stderr once it ended."""
        self.process.send_signal(signal_number)
        return self.wait(timeout)

    def kill(self) -> None:
        """End it if it still runs; its output is then read to the end and the pipes closed."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        for reader in self._readers:
            reader.join(EXIT_TIMEOUT)
            assert not reader.is_alive(), f"{reader.name} still reading after the command ended: a child holds its pipe"
        for pipe in (self.process.stdout, self.process.stderr):
            if pipe is not None:
                pipe.close()
