"""The e2e suite's pytest plugin: which cluster to run against, the cluster fixture, a homelab per scenario.

    pytest tests/e2e --kubeconfig ~/.kube/config     # a real cluster (kind, k3d, k3s, a homelab)
    pytest tests/e2e --e2e-fake                      # our fake API, started by the suite
    pytest tests/e2e --e2e-control-plane             # a real control plane from HOMELAB_K8S_BIN, started by the
                                                     # suite, and the real Cluster Autoscaler (tests/e2e/autoscaler)

CI runs the last two. Without any of them, every scenario is skipped with the reason. The options only exist
when pytest is pointed at tests/e2e (pytest reads options from the conftest files of the paths it is given); the
environment variables work from anywhere. Guide: docs/development/e2e.md.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from e2e_support import (
    CONTROL_PLANE_TIMEOUT_SECONDS,
    FAKE_PACE,
    REAL_TIMEOUT_SECONDS,
    Cluster,
    E2eHomelab,
    apply_crds,
    control_plane_pace,
    is_fake_api,
    new_homelab,
    real_pace,
)

from kubeapi.kube_client import KubeError, new_api_client
from sim.controlplane import ControlPlane
from sim.fakeapi import FakeApiServer
from tests.support.control_plane import running_control_plane

# The scenario table's checks are plain asserts in a helper module: have pytest explain them as in a test module.
pytest.register_assert_rewrite("scenarios")

HERE = Path(__file__).resolve().parent
AUTOSCALER_SCENARIOS = HERE / "autoscaler"
AUTOSCALER_SKIP_REASON = (
    "the scenarios with the real Cluster Autoscaler start their own control planes: they run with "
    "--e2e-control-plane (E2E_CONTROL_PLANE=1) and HOMELAB_K8S_BIN; see docs/development/e2e.md"
)
DEFAULT_JOB_IMAGE = "busybox:1.36"
FAKE_SCENARIO_TIMEOUT = 120.0
CLUSTER_THREAD_PREFIX = "fakeapi-"
"""Threads of the fake API server, which plays the cluster for the whole session and stops at its end."""
SKIP_REASON = (
    "no cluster for the e2e suite: give --kubeconfig FILE (or E2E_KUBECONFIG=FILE) to run against a real cluster, "
    "--e2e-control-plane (or E2E_CONTROL_PLANE=1) with HOMELAB_K8S_BIN=DIR to run against a real control plane the "
    "suite starts itself, or --e2e-fake (or E2E_FAKE=1) for the fake API; see docs/development/e2e.md"
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
        "--e2e-control-plane", action="store_true", default=False,
        help="start a real control plane (etcd, kube-apiserver, kube-controller-manager, kube-scheduler) from the "
        "binaries in HOMELAB_K8S_BIN (or KUBEBUILDER_ASSETS) and run the e2e scenarios against it, and the "
        "scenarios with the real Cluster Autoscaler [env E2E_CONTROL_PLANE=1]",
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


def _wants_control_plane(config: pytest.Config) -> bool:
    return _flag(config, "--e2e-control-plane", "E2E_CONTROL_PLANE")


def _in_this_suite(item: pytest.Item) -> bool:
    return HERE in item.path.resolve().parents


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    ours = [item for item in items if _in_this_suite(item)]
    if not ours:
        return
    modes = [_wants_fake(config), bool(_kubeconfig(config)), _wants_control_plane(config)]
    if sum(modes) > 1:
        raise pytest.UsageError(
            "e2e: give one of a kubeconfig, --e2e-control-plane (E2E_CONTROL_PLANE) or --e2e-fake (E2E_FAKE)"
        )
    if not any(modes):
        for item in ours:
            item.add_marker(pytest.mark.skip(reason=SKIP_REASON))
        return
    if not _wants_control_plane(config):
        for item in ours:
            if AUTOSCALER_SCENARIOS in item.path.resolve().parents:
                item.add_marker(pytest.mark.skip(reason=AUTOSCALER_SKIP_REASON))
    # A scenario on a real cluster waits for several slow steps; the suite-wide pytest timeout is for the fake.
    step = float(_option(config, "--e2e-timeout", "E2E_TIMEOUT") or _default_step(config))
    budget = FAKE_SCENARIO_TIMEOUT if _wants_fake(config) else step * 8
    for item in ours:
        item.add_marker(pytest.mark.e2e)
        item.add_marker(pytest.mark.timeout(budget))


def _default_step(config: pytest.Config) -> float:
    return CONTROL_PLANE_TIMEOUT_SECONDS if _wants_control_plane(config) else REAL_TIMEOUT_SECONDS


@pytest.fixture(scope="session")
def cluster(
    pytestconfig: pytest.Config, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[Cluster]:
    """The cluster of the whole session, our CRDs applied; with --e2e-fake or --e2e-control-plane, started for it."""
    if _wants_control_plane(pytestconfig):
        with running_control_plane(
            request, tmp_path_factory.mktemp("control-plane"), controller_manager_args=ControlPlane.fast_node_lifecycle
        ) as control_plane:
            yield from _prepared_cluster(pytestconfig, control_plane.kubeconfig, None, runs_pods=True, fake=None)
        return
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
        runs_pods = _flag(pytestconfig, "--e2e-no-kubelet", "E2E_NO_KUBELET")
        yield from _prepared_cluster(pytestconfig, kubeconfig, context, runs_pods=runs_pods, fake=fake)
    finally:
        if fake is not None:
            fake.stop()


def _prepared_cluster(
    pytestconfig: pytest.Config, kubeconfig: Path, context: str | None, *, runs_pods: bool, fake: FakeApiServer | None
) -> Iterator[Cluster]:
    api_client = new_api_client(kubeconfig, context)
    try:
        is_fake = is_fake_api(api_client)
        apply_crds(api_client)
    except KubeError as error:
        pytest.fail(f"e2e: cannot prepare the cluster of {kubeconfig}: {error}", pytrace=False)
    finally:
        api_client.close()  # type: ignore[no-untyped-call]  # unannotated upstream
    step = float(_option(pytestconfig, "--e2e-timeout", "E2E_TIMEOUT") or _default_step(pytestconfig))
    own_control_plane = _wants_control_plane(pytestconfig)
    yield Cluster(
        kubeconfig=kubeconfig,
        context=context,
        is_fake=is_fake,
        plays_controllers=is_fake or _flag(pytestconfig, "--e2e-complete-jobs", "E2E_COMPLETE_JOBS"),
        pace=FAKE_PACE if is_fake else control_plane_pace(step) if own_control_plane else real_pace(step),
        job_image=_option(pytestconfig, "--e2e-job-image", "E2E_JOB_IMAGE") or DEFAULT_JOB_IMAGE,
        runs_pods=runs_pods and not is_fake,
        fake=fake,
    )


@pytest.fixture
def long_lived_thread_prefixes() -> tuple[str, ...]:
    """The fake API's threads outlive each scenario: tests/conftest.py's thread check leaves them be."""
    return (CLUSTER_THREAD_PREFIX,)


@pytest.fixture
def homelab(cluster: Cluster, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[E2eHomelab]:
    """A namespace of its own for the scenario, with a Job recorder; removed with its Nodes afterwards."""
    yield from new_homelab(cluster, tmp_path, request.node.name)
