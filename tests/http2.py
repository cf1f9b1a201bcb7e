"""
A minimal HTTP/2 client over TLS, built on the h2 library, so that tests
can open several streams on one connection, see the exact bytes of each,
reset one, or stop reading one.
"""

import asyncio
import ssl

import h2.config
import h2.connection
import h2.errors
import h2.events

# The connection-level receive window the client grants on top of the
# 65,535 bytes that HTTP/2 starts with. Chrome also raises it (to about
# 15 MB), so that one stream that is not read cannot block the others.
CONNECTION_WINDOW_INCREMENT = 16 * 1024 * 1024


class Stream:
    """One request on a ``Connection`` and its response, read incrementally."""

    def __init__(self, connection, stream_id):
        self.connection = connection
        self.stream_id = stream_id
        self.headers = None
        self.buffer = b""
        self.ended = False
        # The error code of a RST_STREAM from the server, or None.
        self.reset_code = None
        # While False, the client takes the data but sends no WINDOW_UPDATE
        # for it, like a page that stopped reading this one response.
        self.reading = True
        self.unacknowledged = 0
        self.changed = asyncio.Condition()

    @property
    def status(self):
        return int(self.header(":status"))

    def header(self, name):
        """Return the value of the first response header called ``name``, or ``None``."""
        for key, value in self.headers or ():
            if key == name:
                return value
        return None

    async def wait_for(self, condition, timeout):
        async with self.changed:
            await asyncio.wait_for(self.changed.wait_for(condition), timeout)

    async def wait_headers(self, timeout=5.0):
        await self.wait_for(lambda: self.headers is not None or self.reset_code is not None, timeout)
        assert self.headers is not None, f"stream {self.stream_id} was reset with error code {self.reset_code}"

    async def read_block(self, timeout=5.0):
        """Return the next event-stream block (an event or a comment), blank line included."""
        await self.wait_for(lambda: b"\n\n" in self.buffer or self.ended or self.reset_code is not None, timeout)
        if b"\n\n" not in self.buffer:
            raise EOFError(f"stream {self.stream_id} ended (reset code {self.reset_code}) before a block")
        end = self.buffer.index(b"\n\n") + 2
        block, self.buffer = self.buffer[:end], self.buffer[end:]
        return block

    async def read_event(self, timeout=5.0):
        """Return the next block that is not a comment."""
        while True:
            block = await self.read_block(timeout)
            if not block.startswith(b":"):
                return block

    async def wait_reset(self, timeout=5.0):
        """Wait for a RST_STREAM from the server and return its error code."""
        await self.wait_for(lambda: self.reset_code is not None or self.ended, timeout)
        assert self.reset_code is not None, f"stream {self.stream_id} ended normally instead of being reset"
        return self.reset_code

    async def reset(self):
        """Cancel the request with RST_STREAM, as a browser does when a page aborts a fetch."""
        self.connection.h2.reset_stream(self.stream_id, h2.errors.ErrorCodes.CANCEL)
        await self.connection.flush()


class Connection:
    """One HTTP/2 connection over TLS that negotiated ``h2`` with ALPN."""

    def __init__(self, reader, writer, authority):
        self.reader = reader
        self.writer = writer
        self.authority = authority
        self.h2 = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding=None))
        self.streams = {}
        self.receiver = None
        self.closed = False
        # The error code of a GOAWAY from the server, or None.
        self.goaway_code = None

    @classmethod
    async def open(cls, host, port, context, timeout=5.0):
        """Connect with ALPN ``h2`` only; ``context`` is an ``ssl.SSLContext`` that trusts the server."""
        context.set_alpn_protocols(["h2"])
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port, ssl=context), timeout)
        connection = cls(reader, writer, f"{host}:{port}")
        connection.h2.initiate_connection()
        connection.h2.increment_flow_control_window(CONNECTION_WINDOW_INCREMENT)
        await connection.flush()
        connection.receiver = asyncio.create_task(connection.receive())
        return connection

    @property
    def alpn_protocol(self):
        ssl_object: ssl.SSLObject = self.writer.get_extra_info("ssl_object")
        return ssl_object.selected_alpn_protocol()

    async def flush(self):
        data = self.h2.data_to_send()
        if data:
            self.writer.write(data)
            await self.writer.drain()

    async def request(self, path, headers=(), method="GET"):
        """Send a request without a body and return its ``Stream`` once the response head has arrived."""
        stream_id = self.h2.get_next_available_stream_id()
        stream = self.streams[stream_id] = Stream(self, stream_id)
        self.h2.send_headers(
            stream_id,
            [(":method", method), (":scheme", "https"), (":authority", self.authority), (":path", path), *headers],
            end_stream=True,
        )
        await self.flush()
        await stream.wait_headers()
        return stream

    async def receive(self):
        while True:
            data = await self.reader.read(65536)
            if not data:
                break
            for event in self.h2.receive_data(data):
                await self.handle(event)
            await self.flush()

        self.closed = True
        for stream in self.streams.values():
            async with stream.changed:
                stream.ended = True
                stream.changed.notify_all()

    async def handle(self, event):
        if isinstance(event, h2.events.ConnectionTerminated):
            self.goaway_code = event.error_code
            return
        stream = self.streams.get(getattr(event, "stream_id", None))
        if stream is None:
            return

        if isinstance(event, h2.events.ResponseReceived):
            stream.headers = [(name.decode(), value.decode()) for name, value in event.headers]
        elif isinstance(event, h2.events.DataReceived):
            stream.buffer += event.data
            if stream.reading:
                self.h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            else:
                stream.unacknowledged += event.flow_controlled_length
        elif isinstance(event, h2.events.StreamEnded):
            stream.ended = True
        elif isinstance(event, h2.events.StreamReset):
            stream.reset_code = event.error_code

        async with stream.changed:
            stream.changed.notify_all()

    async def close(self):
        self.receiver.cancel()
        self.writer.close()
        try:
            await self.writer.wait_closed()
        except (ConnectionError, ssl.SSLError):
            pass
