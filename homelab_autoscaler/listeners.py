"""Which flag a listening address came from, and what to tell a person when it cannot be bound.

`run` opens up to three listeners (gRPC, metrics, webhook). A bind that fails surfaces from three libraries in
three shapes: grpcio's `RuntimeError` with C-core noise on stderr, `[Errno 98] Address already in use` from the
standard library's HTTP servers. Neither names the flag, so a person cannot tell which of the three to change.
This module owns that translation, and the probe that lets the operator find a taken address before it binds
anything (and before it writes anything to the cluster): `check_free` binds and closes a plain socket on each
configured address, so the common case fails with our one line and no library output at all.
"""

from __future__ import annotations

import errno
import socket
from dataclasses import dataclass

from homelab_autoscaler.settings import env_name


@dataclass(frozen=True)
class Listener:
    """One configured listener: the flag it comes from and the address it was given (`HOST:PORT`)."""

    flag: str
    address: str


class ListenerUnavailable(OSError):
    """A listener's address cannot be bound; the message names the flag, the address and what to do."""

    def __init__(self, listener: Listener, reason: str) -> None:
        super().__init__(
            f"{listener.flag} {listener.address}: {reason} (change {listener.flag} or "
            f"{env_name(listener.flag)})"
        )
        self.listener = listener


def reason_for(error: OSError) -> str:
    """What a failed bind means, in words a person can act on. Pure."""
    if error.errno == errno.EADDRINUSE:
        return "the address is already in use; stop the other process listening there or pick a free port"
    if error.errno == errno.EADDRNOTAVAIL:
        return "this machine has no such address; use one of its own addresses, 127.0.0.1 or 0.0.0.0"
    if error.errno == errno.EACCES:
        return "permission denied; ports below 1024 need root or CAP_NET_BIND_SERVICE, so pick a port above 1023"
    if isinstance(error, socket.gaierror):
        return f"the host name does not resolve ({error.strerror or error})"
    return f"cannot listen there: {error.strerror or error}"


def unavailable(listener: Listener, error: OSError) -> ListenerUnavailable:
    """`error` from binding `listener`, as our one-line error (kept as the cause by the caller's `from`)."""
    if isinstance(error, ListenerUnavailable):
        return error
    return ListenerUnavailable(listener, reason_for(error))


def _split(address: str) -> tuple[str, int]:
    host, _separator, port = address.rpartition(":")
    return host.strip("[]"), int(port)


def check_free(listener: Listener) -> None:
    """Raise ListenerUnavailable unless `listener`'s address can be bound now (port 0 always can).

    SO_REUSEADDR is set as the servers set it, so a port left in TIME_WAIT by a previous run is not reported;
    on Linux it still refuses an address another socket listens on. The socket is closed at once: a process that
    takes the port in between is caught by the real bind, which reports through `unavailable` too.
    """
    host, port = _split(listener.address)
    if port == 0:
        return
    try:
        family, kind, protocol, _name, sockaddr = socket.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        with socket.socket(family, kind, protocol) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(sockaddr)
            probe.listen(1)
    except OSError as error:
        raise unavailable(listener, error) from error
