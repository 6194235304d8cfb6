"""Finding the real Kubernetes binaries: what the environment must say, what counts as broken, and the unpack cache;
and what a test needing them does without them (skips) or with a broken one (fails).

No real binaries here: tiny fake ELF files (just the header the checks read) in tmp_path, plain or xz-compressed.
"""

from __future__ import annotations

import lzma
import os
import platform
import threading
from pathlib import Path

import pytest

from sim.controlplane import BadBinary, Binaries, BinariesNotFound, ControlPlaneError, cache_folder, find_binaries
from tests.support.control_plane import binaries_or_skip

MACHINES = {"x86_64": 62, "aarch64": 183}
HOST_MACHINE = MACHINES.get(platform.machine(), 62)
OTHER_MACHINE = 183 if HOST_MACHINE == 62 else 62


def elf(machine: int = HOST_MACHINE, padding: bytes = b"") -> bytes:
    """A 64-byte little-endian ELF64 header for `machine`: enough for the checks, never executed."""
    identification = b"\x7fELF" + bytes([2, 1, 1]) + bytes(9)
    return identification + (2).to_bytes(2, "little") + machine.to_bytes(2, "little") + bytes(44) + padding


def put(folder: Path, name: str, content: bytes, compressed: bool = True) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / (f"{name}.xz" if compressed else name)
    path.write_bytes(lzma.compress(content, format=lzma.FORMAT_XZ) if compressed else content)
    path.chmod(0o755)
    return path


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    put(tmp_path / "bin", "kube-apiserver", elf(padding=b"apiserver"))
    put(tmp_path / "bin", "etcd", elf(padding=b"etcd"))
    return tmp_path / "bin"


def environment(tmp_path: Path, **variables: str) -> dict[str, str]:
    return {"HOMELAB_K8S_CACHE": str(tmp_path / "cache"), **variables}


def test_no_variable_set_says_how_to_enable(tmp_path: Path) -> None:
    with pytest.raises(BinariesNotFound) as raised:
        find_binaries(environment(tmp_path))
    message = str(raised.value)
    assert "HOMELAB_K8S_BIN" in message
    assert "KUBEBUILDER_ASSETS" in message
    assert "\n" not in message


def test_a_missing_folder_is_named(tmp_path: Path) -> None:
    with pytest.raises(BinariesNotFound, match=r"HOMELAB_K8S_BIN=.*nowhere: no such folder"):
        find_binaries(environment(tmp_path, HOMELAB_K8S_BIN=str(tmp_path / "nowhere")))


@pytest.mark.parametrize("missing", ["kube-apiserver", "etcd"])
def test_a_missing_required_binary_is_named(tmp_path: Path, folder: Path, missing: str) -> None:
    (folder / f"{missing}.xz").unlink()
    with pytest.raises(BinariesNotFound, match=f"^{missing} \\(or {missing}.xz\\) not found in {folder}"):
        find_binaries(environment(tmp_path, HOMELAB_K8S_BIN=str(folder)))


def test_optional_binaries_are_none_when_absent_and_required_on_demand(tmp_path: Path, folder: Path) -> None:
    binaries = find_binaries(environment(tmp_path, HOMELAB_K8S_BIN=str(folder)))
    assert (binaries.kube_controller_manager, binaries.kube_scheduler, binaries.cluster_autoscaler) == (None,) * 3
    assert binaries.require("kube-apiserver") == binaries.kube_apiserver
    with pytest.raises(BinariesNotFound, match=r"^kube-scheduler not found in .*HOMELAB_K8S_BIN"):
        binaries.require("kube-scheduler")


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        pytest.param(b"corrupt", r"kube-apiserver\.xz: cannot unpack", id="not-xz"),
        pytest.param(None, r"kube-apiserver\.xz: cannot unpack", id="truncated-xz"),
        pytest.param(lzma.compress(b"#!/bin/sh\necho hi\n"), r"kube-apiserver\.xz: .*not an ELF executable",
                     id="xz-of-a-script"),
        pytest.param(lzma.compress(elf(OTHER_MACHINE)), rf"kube-apiserver\.xz: .*ELF machine {OTHER_MACHINE}",
                     id="wrong-architecture"),
    ],
)
def test_a_broken_archive_fails_naming_the_file(
    tmp_path: Path, folder: Path, content: bytes | None, expected: str
) -> None:
    archive = folder / "kube-apiserver.xz"
    archive.write_bytes(content if content is not None else archive.read_bytes()[:-20])
    with pytest.raises(BadBinary, match=expected) as raised:
        find_binaries(environment(tmp_path, HOMELAB_K8S_BIN=str(folder)))
    assert str(folder / "kube-apiserver.xz") in str(raised.value)
    assert "\n" not in str(raised.value)
    assert isinstance(raised.value, ControlPlaneError)
    assert list((tmp_path / "cache").rglob("kube-apiserver")) == [], "nothing half-made is left in the cache"


@pytest.mark.parametrize(
    ("content", "mode", "expected"),
    [
        pytest.param(elf(OTHER_MACHINE), 0o755, f"ELF machine {OTHER_MACHINE}", id="wrong-architecture"),
        pytest.param(b"#!/bin/sh\n", 0o755, "not an ELF executable", id="script"),
        pytest.param(elf(), 0o644, "not executable", id="not-executable"),
    ],
)
def test_a_broken_plain_binary_fails_naming_the_file(tmp_path: Path, content: bytes, mode: int, expected: str) -> None:
    assets = tmp_path / "assets"
    put(assets, "etcd", elf(), compressed=False)
    path = put(assets, "kube-apiserver", content, compressed=False)
    path.chmod(mode)
    with pytest.raises(BadBinary, match=expected) as raised:
        find_binaries(environment(tmp_path, KUBEBUILDER_ASSETS=str(assets)))
    assert str(raised.value).startswith(f"{path}: ")


def test_envtest_layout_is_used_as_is_from_kubebuilder_assets(tmp_path: Path) -> None:
    assets = tmp_path / "assets"
    apiserver = put(assets, "kube-apiserver", elf(), compressed=False)
    etcd = put(assets, "etcd", elf(), compressed=False)
    binaries = find_binaries(environment(tmp_path, KUBEBUILDER_ASSETS=str(assets)))
    assert (binaries.kube_apiserver, binaries.etcd) == (apiserver, etcd)
    assert not (tmp_path / "cache").exists(), "plain binaries are not copied"


def test_homelab_k8s_bin_wins_over_kubebuilder_assets(tmp_path: Path, folder: Path) -> None:
    binaries = find_binaries(
        environment(tmp_path, HOMELAB_K8S_BIN=str(folder), KUBEBUILDER_ASSETS=str(tmp_path / "nowhere"))
    )
    assert binaries.folder == folder


def test_an_archive_is_unpacked_once_into_the_cache(tmp_path: Path, folder: Path) -> None:
    variables = environment(tmp_path, HOMELAB_K8S_BIN=str(folder))
    first = find_binaries(variables)
    assert first.kube_apiserver.is_relative_to(tmp_path / "cache")
    assert first.kube_apiserver.read_bytes() == elf(padding=b"apiserver")
    assert os.access(first.kube_apiserver, os.X_OK)
    before = first.kube_apiserver.stat()

    second = find_binaries(variables)

    after = second.kube_apiserver.stat()
    assert second == first
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)


def test_a_changed_archive_is_unpacked_again(tmp_path: Path, folder: Path) -> None:
    variables = environment(tmp_path, HOMELAB_K8S_BIN=str(folder))
    old = find_binaries(variables).kube_apiserver
    put(folder, "kube-apiserver", elf(padding=b"a newer apiserver"))

    new = find_binaries(variables).kube_apiserver

    assert new != old
    assert new.read_bytes() == elf(padding=b"a newer apiserver")


def test_concurrent_callers_all_get_the_complete_binary(tmp_path: Path, folder: Path) -> None:
    # Threads stand in for pytest-xdist workers: the lock is per open file description, so it excludes them too.
    variables = environment(tmp_path, HOMELAB_K8S_BIN=str(folder))
    results: list[Binaries] = []
    threads = [threading.Thread(target=lambda: results.append(find_binaries(variables))) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert [thread.name for thread in threads if thread.is_alive()] == []
    assert len(results) == 4
    assert {result.kube_apiserver for result in results} == {results[0].kube_apiserver}
    assert results[0].kube_apiserver.read_bytes() == elf(padding=b"apiserver")
    assert list(results[0].kube_apiserver.parent.glob(".unpacking-*")) == []


@pytest.mark.parametrize("compressed", [True, False])
def test_homelab_ca_bin_overrides_cluster_autoscaler(tmp_path: Path, folder: Path, compressed: bool) -> None:
    put(folder, "cluster-autoscaler", b"broken, and ignored because of the override")
    override = put(tmp_path / "elsewhere", "cluster-autoscaler", elf(padding=b"ca"), compressed=compressed)
    binaries = find_binaries(environment(tmp_path, HOMELAB_K8S_BIN=str(folder), HOMELAB_CA_BIN=str(override)))
    assert binaries.cluster_autoscaler is not None
    assert binaries.cluster_autoscaler.read_bytes() == elf(padding=b"ca")
    assert binaries.require("cluster-autoscaler") == binaries.cluster_autoscaler


def test_a_missing_homelab_ca_bin_is_named(tmp_path: Path, folder: Path) -> None:
    missing = tmp_path / "no-cluster-autoscaler"
    with pytest.raises(BinariesNotFound, match=f"HOMELAB_CA_BIN={missing}: no such file"):
        find_binaries(environment(tmp_path, HOMELAB_K8S_BIN=str(folder), HOMELAB_CA_BIN=str(missing)))


@pytest.mark.parametrize(
    ("variables", "expected"),
    [
        ({"HOMELAB_K8S_CACHE": "/explicit"}, "/explicit"),
        ({"XDG_CACHE_HOME": "/xdg", "HOME": "/home/someone"}, "/xdg/homelab-autoscaler/k8s"),
        ({"HOME": "/home/someone"}, "/home/someone/.cache/homelab-autoscaler/k8s"),
    ],
)
def test_cache_folder_comes_from_the_environment(variables: dict[str, str], expected: str) -> None:
    assert cache_folder(variables) == Path(expected)


def test_a_missing_cluster_autoscaler_points_at_its_override(tmp_path: Path, folder: Path) -> None:
    binaries = find_binaries(environment(tmp_path, HOMELAB_K8S_BIN=str(folder)))
    with pytest.raises(BinariesNotFound, match=r"^cluster-autoscaler not found in .* or HOMELAB_CA_BIN to the binary$"):
        binaries.require("cluster-autoscaler")


def test_without_binaries_a_test_is_skipped_with_how_to_enable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HOMELAB_K8S_BIN", raising=False)
    monkeypatch.delenv("KUBEBUILDER_ASSETS", raising=False)
    with pytest.raises(pytest.skip.Exception) as skipped:
        binaries_or_skip()
    assert "HOMELAB_K8S_BIN=<folder>" in str(skipped.value)
    assert "KUBEBUILDER_ASSETS=<folder>" in str(skipped.value)
    assert "\n" not in str(skipped.value)


def test_with_a_broken_binary_a_test_fails_instead_of_skipping(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, folder: Path
) -> None:
    (folder / "etcd.xz").write_bytes(b"not xz")
    monkeypatch.setenv("HOMELAB_K8S_BIN", str(folder))
    monkeypatch.setenv("HOMELAB_K8S_CACHE", str(tmp_path / "cache"))
    with pytest.raises(BadBinary, match=r"etcd\.xz: cannot unpack"):
        binaries_or_skip()
