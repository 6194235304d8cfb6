"""Finding the real Kubernetes binaries and unpacking the xz-compressed ones once into a shared cache.

The folder comes from the environment (`HOMELAB_K8S_BIN`, else envtest's `KUBEBUILDER_ASSETS`), because the
binaries are large, platform-specific and not part of the project. Inside it each component is either `NAME.xz`
(our shared folder ships them compressed) or a plain executable `NAME` (envtest's layout). Compressed ones are
unpacked into a cache folder keyed by the xz file's size and modification time, so a changed file is unpacked
again and an unchanged one never is; the unpack holds a lock and renames a finished temporary file into place, so
several pytest-xdist workers starting at once unpack each file exactly once and never see half a binary.

Every binary is checked before use (ELF magic, and the ELF machine against this host's), because a truncated
download or an arm64 binary on an amd64 runner otherwise fails much later with an unreadable exec error.
"""

from __future__ import annotations

import fcntl
import hashlib
import lzma
import os
import platform
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from sim.controlplane.errors import BadBinary, BinariesNotFound

FOLDER_VARIABLE: Final = "HOMELAB_K8S_BIN"
ENVTEST_VARIABLE: Final = "KUBEBUILDER_ASSETS"
CACHE_VARIABLE: Final = "HOMELAB_K8S_CACHE"
CLUSTER_AUTOSCALER_VARIABLE: Final = "HOMELAB_CA_BIN"

REQUIRED: Final = ("kube-apiserver", "etcd")
OPTIONAL: Final = ("kube-controller-manager", "kube-scheduler", "cluster-autoscaler")
XZ_SUFFIX: Final = ".xz"

HOW_TO_ENABLE: Final = (
    f"set {FOLDER_VARIABLE}=<folder> (or envtest's {ENVTEST_VARIABLE}=<folder>) holding kube-apiserver, etcd and "
    "optionally kube-controller-manager, kube-scheduler, cluster-autoscaler, as binaries or .xz files"
)

ELF_MAGIC: Final = b"\x7fELF"
ELF_HEADER_PREFIX: Final = 20
"""Bytes up to and including e_machine (offset 18, two bytes): all that the checks below read."""
ELF_MACHINES: Final = {"x86_64": 62, "amd64": 62, "aarch64": 183, "arm64": 183}
"""platform.machine() to ELF e_machine. A host missing here is not checked rather than refused."""
CHUNK: Final = 1 << 20


@dataclass(frozen=True)
class Binaries:
    """Paths of runnable binaries: the two a control plane needs, and the optional ones (None when absent)."""

    folder: Path
    """The configured folder the binaries (or their .xz files) came from."""
    cache: Path
    """Where .xz files are unpacked; a process whose executable lives here or in `folder` is one of ours."""
    kube_apiserver: Path
    etcd: Path
    kube_controller_manager: Path | None = None
    kube_scheduler: Path | None = None
    cluster_autoscaler: Path | None = None

    def require(self, name: str) -> Path:
        """The path of `name` ("kube-scheduler" or "kube_scheduler"); BinariesNotFound when it is absent."""
        attribute = name.replace("-", "_")
        path = getattr(self, attribute, None) if attribute in _COMPONENT_ATTRIBUTES else None
        if not isinstance(path, Path):
            override = f" or {CLUSTER_AUTOSCALER_VARIABLE} to the binary" if attribute == "cluster_autoscaler" else ""
            raise BinariesNotFound(f"{name} not found in {self.folder}: {HOW_TO_ENABLE}{override}")
        return path


_COMPONENT_ATTRIBUTES: Final = frozenset(name.replace("-", "_") for name in REQUIRED + OPTIONAL)


def find_binaries(environ: Mapping[str, str] = os.environ) -> Binaries:
    """The binaries the environment points at, compressed ones unpacked into the cache (once).

    Raises BinariesNotFound when there is nothing to run (callers may skip) and BadBinary when something is there
    but broken (callers must fail).
    """
    folder = _configured_folder(environ)
    cache = cache_folder(environ)
    override = environ.get(CLUSTER_AUTOSCALER_VARIABLE, "")
    found: dict[str, Path | None] = {}
    for name in REQUIRED + OPTIONAL:
        if name == "cluster-autoscaler" and override:
            continue  # the override replaces the folder's copy, which is then neither unpacked nor checked
        source = _source_in(folder, name)
        if source is None and name in REQUIRED:
            raise BinariesNotFound(f"{name} (or {name}{XZ_SUFFIX}) not found in {folder}: {HOW_TO_ENABLE}")
        found[name] = None if source is None else runnable(source, cache)
    if override:
        path = Path(override)
        if not path.is_file():
            raise BinariesNotFound(f"{CLUSTER_AUTOSCALER_VARIABLE}={path}: no such file")
        found["cluster-autoscaler"] = runnable(path, cache)
    return Binaries(
        folder=folder,
        cache=cache,
        kube_apiserver=_present(found["kube-apiserver"]),
        etcd=_present(found["etcd"]),
        kube_controller_manager=found["kube-controller-manager"],
        kube_scheduler=found["kube-scheduler"],
        cluster_autoscaler=found["cluster-autoscaler"],
    )


def cache_folder(environ: Mapping[str, str] = os.environ) -> Path:
    """Where .xz files are unpacked: $HOMELAB_K8S_CACHE, else $XDG_CACHE_HOME/homelab-autoscaler/k8s, else ~/.cache."""
    explicit = environ.get(CACHE_VARIABLE, "")
    if explicit:
        return Path(explicit)
    base = environ.get("XDG_CACHE_HOME", "")
    root = Path(base) if base else Path(environ.get("HOME", "") or Path.home()) / ".cache"
    return root / "homelab-autoscaler" / "k8s"


def runnable(source: Path, cache: Path) -> Path:
    """An executable, checked path for `source`: itself when plain, its unpacked copy in `cache` when `.xz`."""
    if source.name.endswith(XZ_SUFFIX):
        return _unpacked(source, cache)
    if not os.access(source, os.X_OK):
        raise BadBinary(f"{source}: not executable")
    check_elf(source)
    return source


def check_elf(path: Path) -> None:
    """BadBinary unless `path` starts like an ELF file built for this machine."""
    with path.open("rb") as file:
        header = file.read(ELF_HEADER_PREFIX)
    if len(header) < ELF_HEADER_PREFIX or not header.startswith(ELF_MAGIC):
        raise BadBinary(f"{path}: not an ELF executable")
    machine = int.from_bytes(header[18:20], "little" if header[5] == 1 else "big")  # EI_DATA: 1 little-endian
    expected = ELF_MACHINES.get(platform.machine().lower())
    if expected is not None and machine != expected:
        raise BadBinary(f"{path}: built for ELF machine {machine}, this host ({platform.machine()}) needs {expected}")


def _configured_folder(environ: Mapping[str, str]) -> Path:
    for variable in (FOLDER_VARIABLE, ENVTEST_VARIABLE):
        value = environ.get(variable, "")
        if value:
            folder = Path(value)
            if not folder.is_dir():
                raise BinariesNotFound(f"{variable}={folder}: no such folder; {HOW_TO_ENABLE}")
            return folder
    raise BinariesNotFound(f"no Kubernetes binaries configured: {HOW_TO_ENABLE}")


def _source_in(folder: Path, name: str) -> Path | None:
    # The compressed file wins over a plain one beside it: our shared folder is the one that ships .xz files, and
    # a stale unpacked copy next to it must not shadow a newer archive.
    for candidate in (folder / f"{name}{XZ_SUFFIX}", folder / name):
        if candidate.is_file():
            return candidate
    return None


def _present(path: Path | None) -> Path:
    assert path is not None, "find_binaries raises for a missing required binary before this"
    return path


def _unpacked(source: Path, cache: Path) -> Path:
    status = source.stat()
    name = source.name.removesuffix(XZ_SUFFIX)
    # Size and modification time identify a version without reading 20 MB per file on every call; the absolute
    # path keeps two folders with equally sized files apart.
    identity = f"{source.resolve()}\0{status.st_size}\0{status.st_mtime_ns}".encode()
    folder = cache / f"{name}-{hashlib.sha256(identity).hexdigest()[:16]}"
    target = folder / name
    if target.is_file():
        check_elf(target)
        return target
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / ".lock").open("a") as lock:
        # One unpacker per file at a time; the others wait here and then find the finished file.
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not target.is_file():
            _discard_leftovers(folder)
            _unpack(source, target)
    check_elf(target)
    return target


def _discard_leftovers(folder: Path) -> None:
    # Under the lock nobody else is unpacking here, so any temporary file is from an unpacker that died.
    for leftover in folder.glob(".unpacking-*"):
        leftover.unlink(missing_ok=True)


def _unpack(source: Path, target: Path) -> None:
    descriptor, temporary_name = tempfile.mkstemp(prefix=".unpacking-", dir=target.parent)
    temporary = Path(temporary_name)
    try:
        with os.fdopen(descriptor, "wb") as output, lzma.open(source, "rb") as compressed:
            shutil.copyfileobj(compressed, output, CHUNK)
        check_elf(temporary)
        temporary.chmod(0o755)
        os.replace(temporary, target)
    except (lzma.LZMAError, EOFError) as error:
        temporary.unlink(missing_ok=True)
        raise BadBinary(f"{source}: cannot unpack ({error})") from error
    except BadBinary as error:
        temporary.unlink(missing_ok=True)
        raise BadBinary(f"{source}: unpacks to something that is {str(error).split(': ', 1)[1]}") from error
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
