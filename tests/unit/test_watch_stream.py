"""Closing a watch stream from another thread: it ends the reader and never raises, whatever the reader is doing.

The operator closes every watch stream when it stops or loses its Lease, while the watch thread may be reading
it or handing its connection back at that very moment (urllib3 hands it back itself as soon as the server ends a
chunked stream). urllib3 refuses to shut down a response whose connection has gone back to the pool, and the race
once made a graceful stop raise (seen in CI as a teardown error).
"""

from __future__ import annotations

import threading
from typing import Any

import pytest

from kubeapi.watch import WatchStream

EVENT = b'{"type": "ADDED", "object": {"metadata": {"name": "m1"}}}\n'


class _Response:
    """The parts of a urllib3 response a WatchStream uses, refusing a shutdown after release as urllib3 does."""

    chunked = False

    def __init__(self, *, end_during_shutdown: bool = False, releases_at_end: bool = False) -> None:
        self.connection: object | None = object()
        self._releases_at_end = releases_at_end
        self.released = threading.Event()
        self.closes = 0
        self._chunks = [EVENT]
        self._ended = threading.Event()
        self._end_during_shutdown = end_during_shutdown

    def read1(self, _size: int) -> bytes:
        if self._chunks:
            return self._chunks.pop(0)
        self._ended.wait(5.0)
        if self._releases_at_end:
            self.release_conn()  # as urllib3 does inside read_chunked once the server's last chunk arrives
        return b""

    def release_conn(self) -> None:
        self.connection = None
        self.released.set()

    def shutdown(self) -> None:
        if self._end_during_shutdown:
            # The server ends the watch at this very moment; give the reader every chance to hand the
            # connection back before the shutdown goes through.
            self._ended.set()
            self.released.wait(0.5)
        if self.connection is None:
            raise RuntimeError("Cannot shutdown as connection has already been released to the pool")
        self._ended.set()

    def close(self) -> None:
        self.closes += 1


def _read_in_background(stream: WatchStream) -> tuple[threading.Thread, list[dict[str, Any]]]:
    events: list[dict[str, Any]] = []
    first = threading.Event()

    def read() -> None:
        for event in stream:
            events.append(event)
            first.set()

    reader = threading.Thread(target=read, name="test-watch-reader")
    reader.start()
    assert first.wait(5.0), "the reader never got the first event"
    return reader, events


def test_close_ends_a_reader_blocked_on_the_stream() -> None:
    response = _Response()
    stream = WatchStream(response)  # type: ignore[arg-type]  # the parts a stream uses
    reader, events = _read_in_background(stream)

    stream.close()

    reader.join(5.0)
    assert not reader.is_alive()
    assert [event["type"] for event in events] == ["ADDED"]
    assert response.released.is_set()


@pytest.mark.parametrize(
    "released_by_the_client_library",
    [
        pytest.param(False, id="reader-hands-the-connection-back"),
        pytest.param(True, id="urllib3-hands-it-back-inside-read_chunked"),
    ],
)
def test_close_while_the_stream_ends_on_its_own_does_not_raise(released_by_the_client_library: bool) -> None:
    response = _Response(end_during_shutdown=True, releases_at_end=released_by_the_client_library)
    stream = WatchStream(response)  # type: ignore[arg-type]  # the parts a stream uses
    reader, _events = _read_in_background(stream)

    stream.close()

    reader.join(5.0)
    assert not reader.is_alive()
    assert response.released.is_set()


def test_closing_twice_closes_the_response_once() -> None:
    response = _Response()
    stream = WatchStream(response)  # type: ignore[arg-type]  # the parts a stream uses
    reader, _events = _read_in_background(stream)

    stream.close()
    stream.close()

    reader.join(5.0)
    assert not reader.is_alive()
    assert response.closes == 1
