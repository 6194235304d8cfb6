"""An asyncssh server on a loopback port, on its own event loop thread, that records the commands it is asked
to run: the machine end of the SSH power driver's tests.

`behaviour` says what a command does: "exit" (exit status 0), "fail" (exit status 1 with a line on stderr), or
"drop" (the connection is cut as soon as the command arrives, as a machine that powers off cuts it).
"""

from __future__ import annotations

import asyncio
import threading
from types import TracebackType
from typing import Final

import asyncssh

START_TIMEOUT: Final = 10.0


class SshTestServer:
    def __init__(self, authorized_client_key: asyncssh.SSHKey, behaviour: str = "exit") -> None:
        self.host_key = asyncssh.generate_private_key("ssh-ed25519")
        self.authorized_client_key = authorized_client_key
        self.behaviour = behaviour
        self.commands: list[str] = []
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._server: asyncssh.SSHAcceptor | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, name="ssh-test-server", daemon=True)

    @property
    def known_hosts_line(self) -> str:
        public = self.host_key.export_public_key("openssh").decode().strip()
        return f"[127.0.0.1]:{self.port} {public}"

    def __enter__(self) -> SshTestServer:
        self._thread.start()
        future = asyncio.run_coroutine_threadsafe(self._start(), self._loop)
        self._server = future.result(START_TIMEOUT)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        if self._server is not None:
            asyncio.run_coroutine_threadsafe(self._stop(self._server), self._loop).result(START_TIMEOUT)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()

    async def _start(self) -> asyncssh.SSHAcceptor:
        authorized = asyncssh.import_authorized_keys(
            self.authorized_client_key.export_public_key("openssh").decode()
        )
        return await asyncssh.create_server(
            asyncssh.SSHServer,
            "127.0.0.1",
            0,
            server_host_keys=[self.host_key],
            authorized_client_keys=authorized,
            process_factory=self._serve,
            password_auth=False,
            kbdint_auth=False,
        )

    @staticmethod
    async def _stop(server: asyncssh.SSHAcceptor) -> None:
        server.close()
        await server.wait_closed()

    async def _serve(self, process: asyncssh.SSHServerProcess[str]) -> None:
        self.commands.append(process.command or "")
        if self.behaviour == "drop":
            process.get_extra_info("connection").abort()
            return
        if self.behaviour == "fail":
            process.stderr.write("poweroff: permission denied\n")
            process.exit(1)
            return
        process.exit(0)
