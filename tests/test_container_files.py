"""
The container files in docker/, checked without a Docker engine.

No Docker engine runs on the test machines, so the image is never built
here. These tests check the structure of the Dockerfile and the compose
file. They also run the image's steps outside a container: the COPY and
pip install steps into a fresh virtual environment, then the default
command ``python manage.py runsse`` and the healthcheck against it. The
command line of the NATS service runs against a local nats-server.
"""

import asyncio
import json
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import nats
import nats.errors
import pytest
import yaml

from sse.conf import load_config
from sse.embedded_nats import find_nats_server

from .service import ROOT, ServiceProcess, free_port

DOCKERFILE = ROOT / "docker" / "Dockerfile"
DOCKERIGNORE = ROOT / "docker" / "Dockerfile.dockerignore"
COMPOSE_FILE = ROOT / "docker" / "compose.yaml"


def read_instructions(path):
    """Return the instructions of a Dockerfile as ``(KEYWORD, arguments)`` pairs, continuation lines joined."""
    instructions = []
    current = ""
    for line in path.read_text().splitlines():
        stripped = line.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        current += stripped
        keyword, _, arguments = current.partition(" ")
        instructions.append((keyword.upper(), arguments.strip()))
        current = ""
    return instructions


class Dockerfile:
    """The parts of docker/Dockerfile that the tests check."""

    def __init__(self, path):
        self.instructions = read_instructions(path)

    def arguments(self, keyword):
        return [arguments for name, arguments in self.instructions if name == keyword]

    def env(self):
        """Return every ENV of the file, merged in order."""
        variables = {}
        for arguments in self.arguments("ENV"):
            for item in shlex.split(arguments):
                name, _, value = item.partition("=")
                variables[name] = value
        return variables

    def copies(self):
        """Return ``(sources, destination)`` for each COPY."""
        result = []
        for arguments in self.arguments("COPY"):
            *sources, destination = shlex.split(arguments)
            result.append((sources, destination))
        return result

    def command(self):
        """Return the command line the container runs by default: ENTRYPOINT followed by CMD."""
        (entrypoint,) = self.arguments("ENTRYPOINT")
        (cmd,) = self.arguments("CMD")
        return json.loads(entrypoint) + json.loads(cmd)

    def healthcheck(self):
        """Return the exec-form command line of HEALTHCHECK."""
        (arguments,) = self.arguments("HEALTHCHECK")
        _, separator, command = arguments.partition(" CMD ")
        assert separator, f"HEALTHCHECK has no exec-form CMD: {arguments}"
        return json.loads(command)


@pytest.fixture(scope="module")
def dockerfile():
    return Dockerfile(DOCKERFILE)


@pytest.fixture(scope="module")
def compose():
    return yaml.safe_load(COMPOSE_FILE.read_text())


def image_python(venv):
    return str(venv / "bin" / "python")


def docker_argv(argv, python):
    """Return ``argv`` with the image's ``python`` or ``pip`` replaced by ``python`` of a virtual environment."""
    if argv[0] == "python":
        return [python, *argv[1:]]
    if argv[0] == "pip":
        return [python, "-m", "pip", *argv[1:]]
    raise AssertionError(f"unexpected program in {argv}")


@pytest.fixture(scope="module")
def image(tmp_path_factory, dockerfile):
    """
    A directory laid out like /app in the image, with a virtual environment
    that the Dockerfile's pip install step filled.

    Only the COPY and ``pip install`` steps run here. The other RUN steps
    create a system user and need root.
    """
    root = tmp_path_factory.mktemp("image")
    app = root / "app"
    app.mkdir()
    for sources, destination in dockerfile.copies():
        for source in sources:
            if (ROOT / source).is_dir():
                # COPY copies the contents of a directory, not the directory itself.
                shutil.copytree(
                    ROOT / source, app / destination, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__")
                )
            elif destination.endswith("/"):
                shutil.copy(ROOT / source, app / destination / Path(source).name)
            else:
                shutil.copy(ROOT / source, app / destination)

    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    runs = dockerfile.arguments("RUN")
    installs = [shlex.split(arguments) for arguments in runs if arguments.startswith("pip install")]
    assert installs == [["pip", "install", "-r", "requirements.txt"]]
    result = subprocess.run(
        docker_argv(installs[0], image_python(venv)), cwd=app, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, f"pip install failed:\n{result.stdout}{result.stderr}"
    return app, venv


def run_healthcheck(dockerfile, python, debug_addr, cwd):
    argv = docker_argv(dockerfile.healthcheck(), python)
    return subprocess.run(argv, cwd=cwd, env={"SSE_DEBUG_ADDR": debug_addr}, capture_output=True, text=True, timeout=30)


def test_dockerfile_base_image(dockerfile):
    assert dockerfile.arguments("FROM") == ["python:3.11-slim"]


def test_dockerfile_runs_as_non_root(dockerfile):
    keywords = [keyword for keyword, _ in dockerfile.instructions]
    (user,) = dockerfile.arguments("USER")

    assert user not in ("root", "0")
    assert keywords.index("USER") > max(index for index, keyword in enumerate(keywords) if keyword == "RUN")


def test_dockerfile_default_command_is_runsse(dockerfile):
    assert dockerfile.command() == ["python", "manage.py", "runsse"]


def test_dockerfile_exposes_both_ports(dockerfile):
    assert dockerfile.arguments("EXPOSE") == ["9135 9139"]


def test_dockerfile_binds_every_interface(dockerfile):
    env = dockerfile.env()

    assert env["SSE_HTTP_ADDR"] == "0.0.0.0:9135"
    assert env["SSE_DEBUG_ADDR"] == "0.0.0.0:9139"
    config = load_config(environ=env)
    assert (config.http_addr.host, config.http_addr.port) == ("0.0.0.0", 9135)
    assert (config.debug_addr.host, config.debug_addr.port) == ("0.0.0.0", 9139)


def test_dockerignore_keeps_copied_paths(dockerfile):
    included = {line[1:] for line in DOCKERIGNORE.read_text().splitlines() if line.startswith("!")}

    for sources, _ in dockerfile.copies():
        for source in sources:
            assert (ROOT / source).exists(), source
            assert source in included, f"{source} is copied but excluded from the build context"


def test_image_install_runs_service_and_healthcheck(image, dockerfile, nats_url, tmp_path):
    app, venv = image
    python = image_python(venv)
    process = ServiceProcess(
        nats_url,
        python=python,
        cwd=app,
        DJANGO_SETTINGS_MODULE=dockerfile.env()["DJANGO_SETTINGS_MODULE"],
        DJANGO_DATABASE_PATH=str(tmp_path / "db.sqlite3"),
    ).start()
    try:
        as_configured = run_healthcheck(dockerfile, python, f"127.0.0.1:{process.debug_port}", app)
        every_interface = run_healthcheck(dockerfile, python, f"0.0.0.0:{process.debug_port}", app)
    finally:
        exit_code = process.stop()

    assert as_configured.returncode == 0, as_configured.stderr
    assert every_interface.returncode == 0, every_interface.stderr
    assert exit_code == 0, process.output()
    assert "Starting sse" in process.output()


def test_image_runs_other_management_commands(image, dockerfile, tmp_path):
    app, venv = image
    entrypoint = docker_argv(json.loads(dockerfile.arguments("ENTRYPOINT")[0]), image_python(venv))
    env = {**dockerfile.env(), "DJANGO_DATABASE_PATH": str(tmp_path / "db.sqlite3")}

    result = subprocess.run(
        [*entrypoint, "migrate", "--noinput"], cwd=app, env=env, capture_output=True, text=True, timeout=120
    )

    assert result.returncode == 0, result.stderr
    assert (tmp_path / "db.sqlite3").exists()


def test_healthcheck_fails_without_server(dockerfile):
    port = free_port()
    result = run_healthcheck(dockerfile, sys.executable, f"0.0.0.0:{port}", ROOT)

    assert result.returncode == 1
    assert f"the connection to http://127.0.0.1:{port}/healthz was refused" in result.stderr


def test_compose_has_three_services(compose):
    assert set(compose["services"]) == {"nats", "redis", "sse"}


def test_compose_nats_runs_jetstream(compose):
    nats_service = compose["services"]["nats"]

    assert nats_service["image"] == "nats:2"
    assert "-js" in nats_service["command"]


def test_compose_redis_image(compose):
    assert compose["services"]["redis"]["image"].startswith("redis:")


def test_compose_builds_service_from_dockerfile(compose):
    build = compose["services"]["sse"]["build"]

    context = (COMPOSE_FILE.parent / build["context"]).resolve()
    assert context == ROOT
    assert context / build["dockerfile"] == DOCKERFILE


def test_compose_service_environment(compose, dockerfile):
    service = compose["services"]["sse"]
    environment = service["environment"]

    assert environment["SSE_EVENTS_ENDPOINT"] == "nats:4222"
    assert environment["SSE_JWT_SECRET"].startswith("change-me")
    assert "nats" in service["depends_on"]
    config = load_config(environ={**dockerfile.env(), **environment})
    assert config.events_endpoint == ("nats://nats:4222",)


def test_compose_publishes_both_ports(compose):
    ports = [str(port) for port in compose["services"]["sse"]["ports"]]

    assert any(port.endswith(":9135") for port in ports)
    assert any(port.endswith(":9139") for port in ports)


async def test_compose_nats_command_starts_jetstream(compose, tmp_path):
    # The volume nats-data is mounted on /data, so the store goes to a
    # temporary directory here. -a and -p keep the server on a free local port.
    command = compose["services"]["nats"]["command"]
    command = [str(tmp_path) if argument == "/data" else argument for argument in command]
    port = free_port()
    server = subprocess.Popen(
        [find_nats_server(), *command, "-a", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        connection = await connect_when_ready(f"nats://127.0.0.1:{port}")
        info = await connection.jetstream().account_info()
        await connection.close()
    finally:
        server.terminate()
        server.wait(10)

    assert info.streams == 0
    assert any(Path(tmp_path).iterdir()), "JetStream did not use the store directory"


async def connect_when_ready(url, timeout=10.0):
    deadline = time.monotonic() + timeout
    while True:
        try:
            return await nats.connect(url, connect_timeout=1, allow_reconnect=False)
        except (OSError, nats.errors.Error):
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.05)
