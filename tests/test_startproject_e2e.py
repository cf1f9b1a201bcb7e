"""
The README's steps for adding the app to a new Django project, followed on
a project made by ``django-admin startproject``, then served by runsse.
"""

import asyncio
import os
import subprocess
import sys

from sse.wire import encode_envelope

from .conftest import token_for
from .http import request
from .service import ServiceProcess

SETTINGS = """
INSTALLED_APPS += ["channels", "sse"]
ASGI_APPLICATION = "demo.asgi.application"
CHANNEL_LAYERS = {"default": {"BACKEND": "sse.layers.InMemoryChannelLayer"}}
"""

ASGI = """\
import os

from channels.routing import ProtocolTypeRouter
from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "demo.settings")
django_application = get_asgi_application()

from sse.routing import EventStreamRouter  # noqa: E402

application = ProtocolTypeRouter({"http": EventStreamRouter(fallback=django_application)})
"""


def test_app_in_new_project(tmp_path, nats_url, user_id):
    subprocess.run(
        [sys.executable, "-m", "django", "startproject", "demo", str(tmp_path)],
        check=True,
        capture_output=True,
    )
    with open(tmp_path / "demo" / "settings.py", "a") as settings:
        settings.write(SETTINGS)
    (tmp_path / "demo" / "asgi.py").write_text(ASGI)

    service = ServiceProcess(nats_url, cwd=tmp_path, DJANGO_SETTINGS_MODULE="demo.settings").start()

    async def stream_one_event():
        stream = await request(service.http_port, "/sse", [("x-access-token", token_for(user_id))])
        assert stream.status == 200
        assert await stream.read_block() == b": stream opened\n\n"
        env = {key: value for key, value in os.environ.items() if not key.startswith(("SSE_", "OCIS_"))}
        env.update(DJANGO_SETTINGS_MODULE="demo.settings", SSE_EVENTS_ENDPOINT=nats_url)
        published = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "manage.py", "ssepublish", "--type", "demo", "--message", "hello", user_id],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
        )
        assert published.returncode == 0, published.stderr
        sequence = int(published.stdout.strip().rstrip(".").rsplit(" ", 1)[1])
        assert await stream.read_event() == b"id: %d\nevent: demo\ndata: hello\n\n" % sequence
        await stream.close()

        admin = await request(service.http_port, "/admin/login/")
        assert admin.status == 200
        await admin.close()

    try:
        asyncio.run(stream_one_event())
    finally:
        assert service.stop() == 0, service.output()
