"""The pytest side of `sim.controlplane`: skip without binaries, logs on failure, no process left behind.

- `binaries_or_skip()`: the real binaries, or a skip saying how to provide them. A binary that is there but broken
  (`BadBinary`) fails the test instead: the environment promised binaries and did not deliver.
- `running_control_plane(request, tmp_path, **options)`: a context manager that starts a `ControlPlane` in a fresh
  folder under tmp_path, yields it and stops it. When the test fails, every component's log tail is attached to
  the failure report ("control plane logs" section). A component binary that is absent (envtest's assets have no
kube-controller-manager) skips the test too. After the stop, any process it started that is still alive,
  and any child of this pytest process running one of the binaries (outside the control planes still running),
  fails the test and is killed: a leftover process would slow down or confuse every test after it. So a test that
  runs Cluster Autoscaler from the same binaries stops it before the control plane's teardown (a fixture that
  depends on the control plane's fixture is torn down first).

Use it in a test body or in a fixture:

    def test_something(request, tmp_path):
        with running_control_plane(request, tmp_path, scheduler=False) as control_plane:
            ...

    @pytest.fixture
    def control_plane(request, tmp_path):
        with running_control_plane(request, tmp_path) as control_plane:
            yield control_plane

In a test body the failing exception passes through the context manager, which attaches the logs itself. In a
fixture the test's failure never reaches it: the report hook, which tests/conftest.py imports for every folder,
attaches the logs while the control plane is still running (and records each phase's report for `phase_failed`).
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import Any, Final

import pytest

from sim.controlplane import Binaries, BinariesNotFound, ControlPlane, find_binaries

LOG_LINES: Final = 40
SECTION: Final = "control plane logs"

_LOG_SOURCES: Final = pytest.StashKey[list[tuple[str, Callable[[], str]]]]()
"""Other logs a test item wants shown when it fails, registered with `show_on_failure`."""
_REPORTS: Final = pytest.StashKey[dict[str, pytest.TestReport]]()
"""Each finished phase's report ("setup", "call", "teardown") of a test item, kept by the report hook."""
_RUNNING: Final[dict[int, ControlPlane]] = {}
"""Every control plane started through this module and not yet stopped: the report hook attaches their logs, and
the leak scan after one stop does not mistake another's processes (two in one test, or one a module-scoped fixture
keeps) for leftovers."""


def binaries_or_skip() -> Binaries:
    """The real binaries; skips (one line, how to enable) when none are configured. BadBinary propagates: fails."""
    try:
        return find_binaries()
    except BinariesNotFound as error:
        pytest.skip(_skip_reason(error))


def _skip_reason(error: BinariesNotFound) -> str:
    # One line that says what is missing and how to provide it, e.g. HOMELAB_K8S_BIN=/work/shared/k8s/bin.
    return f"no real control plane: {error}"


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, Any]:
    """Attach the logs of every running control plane to a failed setup or call report; keep every report."""
    report: pytest.TestReport = yield
    item.stash.setdefault(_REPORTS, {})[report.when] = report
    if report.failed and report.when in ("setup", "call"):
        # Every running one, not only the item's own: a module-scoped control plane matters to its tests too.
        for control_plane in _RUNNING.values():
            report.sections.append((f"{SECTION} ({control_plane.directory})", control_plane.log_tail(LOG_LINES)))
        for title, source in item.stash.get(_LOG_SOURCES, []):
            report.sections.append((title, source()))
    return report


def show_on_failure(request: pytest.FixtureRequest, title: str, source: Callable[[], str]) -> None:
    """Have the report hook add `source()` (read when the test fails) as a section headed `title`: the logs of
    programs a test runs beside the control plane (the operator, Cluster Autoscaler)."""
    request.node.stash.setdefault(_LOG_SOURCES, []).append((title, source))


def phase_failed(request: pytest.FixtureRequest) -> bool:
    """Whether the requesting test's setup or call failed so far (kept by the report hook)."""
    reports = request.node.stash.get(_REPORTS, {})
    return any(report.failed for when, report in reports.items() if when in ("setup", "call"))


@contextlib.contextmanager
def running_control_plane(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    *,
    binaries: Binaries | None = None,
    timeout: float = 120.0,
    **options: Any,
) -> Iterator[ControlPlane]:
    """Start a ControlPlane (`options` go to its constructor) in a new folder under `tmp_path`; see the module."""
    try:
        control_plane = ControlPlane(binaries or binaries_or_skip(), _fresh_folder(tmp_path), **options)
    except BinariesNotFound as error:  # e.g. envtest's assets have no kube-controller-manager
        pytest.skip(_skip_reason(error))
    control_plane.start(timeout)  # on failure it has stopped itself, and its message holds the log tail
    _RUNNING[id(control_plane)] = control_plane
    failing = False
    try:
        yield control_plane
    except BaseException as error:
        failing = True
        # The test failed inside the block: attach the logs now, as the report hook will no longer see this one.
        if isinstance(request.node, pytest.Item) and not isinstance(error, pytest.skip.Exception):
            request.node.add_report_section("call", SECTION, control_plane.log_tail(LOG_LINES))
        raise
    finally:
        try:
            control_plane.stop()
        finally:
            del _RUNNING[id(control_plane)]
            leftovers = _kill_leftovers(control_plane)
        if leftovers and not failing:
            pytest.fail(
                f"processes left running after the control plane in {control_plane.directory} stopped "
                f"(now killed): {', '.join(leftovers)}"
            )


def _fresh_folder(tmp_path: Path) -> Path:
    for number in range(1, 1000):
        folder = tmp_path / ("control-plane" if number == 1 else f"control-plane-{number}")
        with contextlib.suppress(FileExistsError):
            folder.mkdir(parents=True)
            return folder
    raise RuntimeError(f"no free control-plane folder name in {tmp_path}")


def _kill_leftovers(control_plane: ControlPlane) -> list[str]:
    """Describe and kill what `control_plane` left running: its own processes, then stray children of pytest."""
    leftovers = []
    for name, process in control_plane.processes().items():
        if process.alive:
            leftovers.append(f"{name} (pid {process.pid})")
            process.kill()
    for pid, executable in stray_children(control_plane.binaries):
        leftovers.append(f"{executable} (pid {pid})")
        # Our unreaped child: its pid cannot have been reused, so signalling and reaping it is safe.
        with contextlib.suppress(ProcessLookupError, ChildProcessError):
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
    return leftovers


def stray_children(binaries: Binaries) -> list[tuple[int, str]]:
    """(pid, executable) of each child of this process whose executable is one of the binaries' folders, but for
    those of control planes started here and still running (a module- or session-scoped one is not a leftover)."""
    still_running = {
        process.pid for other in _RUNNING.values() for process in other.processes().values() if process.alive
    }
    return [(pid, executable) for pid, executable in _children_running(binaries) if pid not in still_running]


def _children_running(binaries: Binaries) -> list[tuple[int, str]]:
    """(pid, executable) of each child of this process whose executable is one of the binaries' folders."""
    roots = (str(binaries.cache) + os.sep, str(binaries.folder) + os.sep)
    myself = os.getpid()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            # The parent pid is the field after the parenthesised command name, which may itself hold spaces.
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            executable = os.readlink(entry / "exe") if parent == myself else ""
        except (OSError, IndexError, ValueError):
            continue  # gone meanwhile, a zombie (no exe link), or not ours to read
        if executable.startswith(roots):
            found.append((int(entry.name), executable))
    return found
