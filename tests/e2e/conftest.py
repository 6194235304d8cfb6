"""The e2e suite's pytest plugin: which cluster to run against, the cluster fixture, a homelab per scenario.

    pytest tests/e2e --kubeconfig ~/.kube/config     # a real cluster (kind, k3d, k3s, a homelab)
    pytest tests/e2e --e2e-fake                      # our fake API, started by the suite (what CI runs)

Without either, every scenario is skipped with the reason. The options only exist when pytest is pointed at
tests/e2e (pytest reads options from the conftest files of the paths it is given); the environment variables work
from anywhere. Guide: docs/development/e2e.md.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from e2e_support import (
    FAKE_PACE,
    REAL_TIMEOUT_SECONDS,
    Cluster,
    E2eHomelab,
    apply_crds,
    is_fake_api,
    new_homelab,
    real_pace,
)

from actors.adapters.kube_client import KubeError, new_api_client
from sim.fakeapi import FakeApiServer

HERE = Path(__file__).resolve().parent
DEFAULT_JOB_IMAGE = "busybox:1.36"
FAKE_SCENARIO_TIMEOUT = 120.0
THREAD_EXIT_BACKSTOP = 5.0
"""Seconds a thread may take to finish after its owner stopped (grpcio ends its last helper just after stop)."""
CLUSTER_THREAD_PREFIX = "fakeapi-"
"""Threads of the fake API server, which plays the cluster for the whole session and stops at its end."""
SKIP_REASON = (
    "no cluster for the e2e suite: give --kubeconfig FILE (or E2E_KUBECONFIG=FILE) to run against a real cluster, "
    "or --e2e-fake (or E2E_FAKE=1) to run against the fake API the suite starts itself; see docs/development/e2e.md"
)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("e2e", "end-to-end suite (tests/e2e, see docs/development/e2e.md)")
    group.addoption(
        "--kubeconfig", metavar="FILE", default=None,
        help="run the e2e scenarios against the cluster of this kubeconfig [env E2E_KUBECONFIG]",
    )
    group.addoption(
        "--e2e-context", metavar="NAME", default=None,
        help="kubeconfig context to use; default the current one [env E2E_CONTEXT]",
    )
    group.addoption(
        "--e2e-fake", action="store_true", default=False,
        help="start the fake API server (sim.fakeapi) and run the e2e scenarios against it [env E2E_FAKE=1]",
    )
    group.addoption(
        "--e2e-complete-jobs", action="store_true", default=False,
        help="the cluster runs no controller-manager: let the machine simulator finish power Jobs and mark "
        "stopped Nodes NotReady (always on with the fake) [env E2E_COMPLETE_JOBS=1]",
    )
    group.addoption(
        "--e2e-no-kubelet", action="store_true", default=False,
        help="the cluster runs no kubelet (a bare control plane with its controllers): the machine simulator runs "
        "the pods bound to simulated machines, and each scenario has an always-on machine for its power Jobs "
        "[env E2E_NO_KUBELET=1]",
    )
    group.addoption(
        "--e2e-timeout", metavar="SECONDS", type=float, default=None,
        help=f"longest wait for one step on a real cluster (default {REAL_TIMEOUT_SECONDS:.0f}) [env E2E_TIMEOUT]",
    )
    group.addoption(
        "--e2e-job-image", metavar="IMAGE", default=None,
        help=f"image of the power Jobs on a real cluster (needs `sh`; default {DEFAULT_JOB_IMAGE}) "
        "[env E2E_JOB_IMAGE]",
    )


def _option(config: pytest.Config, name: str, variable: str) -> str | None:
    # An option pytest did not register (tests/e2e not named on the command line) reads as None.
    value = config.getoption(name, default=None)
    if value not in (None, False):
        return str(value)
    return os.environ.get(variable) or None


def _flag(config: pytest.Config, name: str, variable: str) -> bool:
    return bool(config.getoption(name, default=False)) or os.environ.get(variable, "") not in ("", "0", "false")


def _wants_fake(config: pytest.Config) -> bool:
    return _flag(config, "--e2e-fake", "E2E_FAKE")


def _kubeconfig(config: pytest.Config) -> str | None:
    return _option(config, "--kubeconfig", "E2E_KUBECONFIG")


def _in_this_suite(item: pytest.Item) -> bool:
    return HERE in item.path.resolve().parents


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    ours = [item for item in items if _in_this_suite(item)]
    if not ours:
        return
    if _wants_fake(config) and _kubeconfig(config):
        raise pytest.UsageError("e2e: give either a kubeconfig or --e2e-fake (E2E_FAKE), not both")
    if not _wants_fake(config) and not _kubeconfig(config):
        for item in ours:
            item.add_marker(pytest.mark.skip(reason=SKIP_REASON))
        return
    # A scenario on a real cluster waits for several slow steps; the suite-wide pytest timeout is for the fake.
    step = float(_option(config, "--e2e-timeout", "E2E_TIMEOUT") or REAL_TIMEOUT_SECONDS)
    budget = FAKE_SCENARIO_TIMEOUT if _wants_fake(config) else step * 8
    for item in ours:
        item.add_marker(pytest.mark.e2e)
        item.add_marker(pytest.mark.timeout(budget))


@pytest.fixture(scope="session")
def cluster(pytestconfig: pytest.Config, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """The cluster of the whole session, our CRDs applied; with --e2e-fake, the fake API started for it."""
    fake: FakeApiServer | None = None
    kubeconfig_text = _kubeconfig(pytestconfig)
    if kubeconfig_text is not None:
        kubeconfig = Path(kubeconfig_text).expanduser()
        if not kubeconfig.is_file():
            raise pytest.UsageError(f"e2e: kubeconfig {kubeconfig} does not exist")
        context = _option(pytestconfig, "--e2e-context", "E2E_CONTEXT")
    else:
        fake = FakeApiServer(host="127.0.0.1", port=0).start()
        kubeconfig = fake.write_kubeconfig(tmp_path_factory.mktemp("fake-api") / "kubeconfig")
        context = None
    try:
        api_client = new_api_client(kubeconfig, context)
        try:
            is_fake = is_fake_api(api_client)
            apply_crds(api_client)
        except KubeError as error:
            pytest.fail(f"e2e: cannot prepare the cluster of {kubeconfig}: {error}", pytrace=False)
        finally:
            api_client.close()  # type: ignore[no-untyped-call]  # unannotated upstream
        step = float(_option(pytestconfig, "--e2e-timeout", "E2E_TIMEOUT") or REAL_TIMEOUT_SECONDS)
        yield Cluster(
            kubeconfig=kubeconfig,
            context=context,
            is_fake=is_fake,
            plays_controllers=is_fake or _flag(pytestconfig, "--e2e-complete-jobs", "E2E_COMPLETE_JOBS"),
            pace=FAKE_PACE if is_fake else real_pace(step),
            job_image=_option(pytestconfig, "--e2e-job-image", "E2E_JOB_IMAGE") or DEFAULT_JOB_IMAGE,
            runs_pods=not is_fake and _flag(pytestconfig, "--e2e-no-kubelet", "E2E_NO_KUBELET"),
        )
    finally:
        if fake is not None:
            fake.stop()


@pytest.fixture(autouse=True)
def no_thread_left_behind() -> Iterator[None]:
    before = set(threading.enumerate())
    yield
    started = [thread for thread in set(threading.enumerate()) - before
               if not thread.name.startswith(CLUSTER_THREAD_PREFIX)]
    for thread in started:
        thread.join(THREAD_EXIT_BACKSTOP)
    left = [thread.name for thread in started if thread.is_alive()]
    assert left == [], f"threads left running: {left}"


@pytest.fixture
def homelab(cluster: Cluster, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[E2eHomelab]:
    """A namespace of its own for the scenario, with a Job recorder; removed with its Nodes afterwards."""
    yield from new_homelab(cluster, tmp_path, request.node.name)
