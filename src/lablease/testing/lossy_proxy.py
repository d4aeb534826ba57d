"""A loopback HTTP proxy that loses answers: the service acts on a request, the client never hears of it.

For tests of services that have no fault injection of their own (the DNS service): the first
``lose`` requests whose first line contains ``match`` are forwarded and answered upstream, then the
client's connection is closed without a byte of the answer. One request per connection (it asks
for ``Connection: close`` upstream), which is all the tests need.
"""

from __future__ import annotations

import asyncio
import threading


class LossyProxy:
    """Listens on 127.0.0.1 (a free port) and forwards to ``upstream_port``; ``lost`` counts lost answers."""

    def __init__(self, upstream_port: int, match: str, lose: int = 1):
        self.upstream_port = upstream_port
        self.match = match.encode()
        self.lose = lose
        self.lost = 0
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lossy-proxy", daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("lossy proxy did not start")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(asyncio.start_server(self._serve, "127.0.0.1", 0))
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()
        server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            body = await reader.readexactly(length) if length else b""
            first = head.split(b"\r\n", 1)[0]
            lines = [ln for ln in head.split(b"\r\n") if ln and not ln.lower().startswith(b"connection:")]
            request = b"\r\n".join(lines + [b"Connection: close", b"", b""]) + body
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
            up_writer.write(request)
            await up_writer.drain()
            answer = await up_reader.read()  # the whole answer: the service has acted
            up_writer.close()
            if self.match in first and self.lost < self.lose:
                self.lost += 1
                return  # closed below without a byte of the answer
            writer.write(answer)
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    def close(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
