"""
A minimal HTTP/1.1 client over a raw socket, so that tests see the exact
bytes the server writes, chunk framing removed.
"""

import asyncio


class Response:
    """A response whose body is read incrementally."""

    def __init__(self, reader, writer, status, headers):
        self.reader = reader
        self.writer = writer
        self.status = status
        self.headers = headers
        self.buffer = b""
        self.finished = False
        self.chunked = self.header("transfer-encoding") == "chunked"
        length = self.header("content-length")
        self.remaining = int(length) if length is not None else None

    def header(self, name):
        """Return the value of the first header called ``name``, or ``None``."""
        for key, value in self.headers:
            if key == name:
                return value
        return None

    def header_names(self):
        return [key for key, _ in self.headers]

    async def _read_more(self):
        if self.finished:
            raise EOFError("the response has ended")
        if self.chunked:
            size_line = await self.reader.readuntil(b"\r\n")
            size = int(size_line.split(b";")[0], 16)
            data = await self.reader.readexactly(size + 2)
            if size == 0:
                self.finished = True
            self.buffer += data[:-2]
        elif self.remaining is not None:
            data = await self.reader.read(self.remaining) if self.remaining else b""
            self.remaining -= len(data)
            if not data or self.remaining == 0:
                self.finished = True
            self.buffer += data
        else:
            data = await self.reader.read(65536)
            if not data:
                self.finished = True
            self.buffer += data

    async def read_until(self, terminator, timeout=5.0):
        """Return the body up to and including ``terminator``."""

        async def read():
            while terminator not in self.buffer:
                await self._read_more()
            end = self.buffer.index(terminator) + len(terminator)
            data, self.buffer = self.buffer[:end], self.buffer[end:]
            return data

        return await asyncio.wait_for(read(), timeout)

    async def read_block(self, timeout=5.0):
        """Return the next event-stream block (an event or a comment), blank line included."""
        return await self.read_until(b"\n\n", timeout)

    async def read_event(self, timeout=5.0):
        """Return the next block that is not a comment."""
        while True:
            block = await self.read_block(timeout)
            if not block.startswith(b":"):
                return block

    async def read_to_end(self, timeout=5.0):
        async def read():
            while not self.finished:
                await self._read_more()
            data, self.buffer = self.buffer, b""
            return data

        return await asyncio.wait_for(read(), timeout)

    async def wait_closed(self, timeout=5.0):
        """Wait until the server ends the response or closes the connection."""

        async def read():
            try:
                while not self.finished:
                    await self._read_more()
            except (asyncio.IncompleteReadError, ConnectionError):
                pass

        await asyncio.wait_for(read(), timeout)

    async def close(self):
        self.writer.close()
        try:
            await self.writer.wait_closed()
        except ConnectionError:
            pass


async def request(port, path, headers=(), method="GET", host="127.0.0.1", timeout=5.0, ssl=None):
    """
    Send one request and return the ``Response`` once its head has arrived.

    ``ssl`` is an ``ssl.SSLContext`` for a request over TLS, whose server
    name is ``host``.
    """
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port, ssl=ssl), timeout)
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}:{port}"]
    lines.extend(f"{name}: {value}" for name, value in headers)
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
    await writer.drain()

    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout)
    status_line, *header_lines = head.decode("latin-1").split("\r\n")[:-2]
    status = int(status_line.split(" ")[1])
    parsed = []
    for line in header_lines:
        name, _, value = line.partition(":")
        parsed.append((name.strip().lower(), value.strip()))
    return Response(reader, writer, status, parsed)
