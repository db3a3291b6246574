"""A TCP proxy whose connections can go silent, for the browser tests.

``SilentProxy(port)`` forwards 127.0.0.1:``proxy.port`` to the app on
``port``, on a thread and event loop of its own. ``silence_next(b"GET
/ticker", ...)`` makes the next request that starts with each prefix go
nowhere, and its connection with it: from then on nothing is forwarded
either way and nothing is closed, which is what a laptop waking from sleep,
a phone changing networks or a NAT that forgot the mapping looks like to a
browser. Every other connection, a new one included, goes on as before.
``silenced`` lists ``(time.monotonic(), request line)`` for each.
"""

from __future__ import annotations

import asyncio
import threading
import time


class SilentProxy:
    def __init__(self, port: int) -> None:
        self.upstream = port
        self.silenced: list[tuple[float, str]] = []
        self._next: list[bytes] = []  # prefixes to silence, each once
        self._lock = threading.Lock()
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="silent-proxy", daemon=True)
        self._thread.start()
        self._server = asyncio.run_coroutine_threadsafe(self._listen(), self.loop).result(timeout=5)
        self.port = self._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}/"

    def __enter__(self) -> "SilentProxy":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def silence_next(self, *prefixes: bytes) -> None:
        with self._lock:
            self._next.extend(prefixes)

    def close(self) -> None:
        async def stop() -> None:
            self._server.close()
            tasks = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(stop(), self.loop).result(timeout=5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=5)
        self.loop.close()

    async def _listen(self) -> asyncio.base_events.Server:
        self._silence = asyncio.Event()  # never set: what a silent connection waits for
        return await asyncio.start_server(self._serve, "127.0.0.1", 0)

    def _silences(self, chunk: bytes) -> bool:
        """Is ``chunk`` the start of a request to silence? (Each prefix once.)"""
        with self._lock:
            for prefix in self._next:
                if chunk.startswith(prefix):
                    self._next.remove(prefix)
                    self.silenced.append((time.monotonic(), chunk.split(b"\r\n", 1)[0].decode("latin-1")))
                    return True
        return False

    async def _serve(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        try:
            app_reader, app_writer = await asyncio.open_connection("127.0.0.1", self.upstream)
        except OSError:
            client_writer.close()
            return
        connection = {"silent": False}
        try:
            await asyncio.gather(
                self._pump(client_reader, app_writer, connection, requests=True),
                self._pump(app_reader, client_writer, connection, requests=False),
            )
        except asyncio.CancelledError:
            pass  # close(): end quietly (asyncio reports a handler's exception, a cancellation too)
        finally:
            for writer in (client_writer, app_writer):
                writer.transport.abort()

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, connection: dict,
                    requests: bool) -> None:  # fmt: skip
        """Forwards what ``reader`` reads to ``writer`` until either side
        closes, or, once the connection is silent, nothing, for ever."""
        try:
            while True:
                chunk = await reader.read(65536)
                if requests and chunk and not connection["silent"] and self._silences(chunk):
                    connection["silent"] = True
                if connection["silent"]:
                    await self._silence.wait()
                if not chunk:
                    break
                writer.write(chunk)
                await writer.drain()
        except ConnectionError:
            pass
        if not connection["silent"] and writer.can_write_eof():
            writer.write_eof()
