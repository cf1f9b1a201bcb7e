"""
Profiling endpoints of the debug server, under ``/debug/pprof/``.

* ``profile?seconds=N``: a cProfile CPU profile of the event loop thread,
  which runs the streams, the bridge and the debug server, for N seconds
  (default 30, at most 300). The body is the marshal format that
  ``pstats.Stats``, snakeviz and gprof2dot read.
* ``tasks``: the stack of every asyncio task and every thread, as text.
"""

import asyncio
import cProfile
import io
import marshal
import sys
import threading
import traceback
from urllib.parse import parse_qs

TEXT = b"text/plain; charset=utf-8"
BINARY = b"application/octet-stream"

DEFAULT_PROFILE_SECONDS = 30
MAX_PROFILE_SECONDS = 300

INDEX = b"""Profiling endpoints:

/debug/pprof/profile?seconds=30  CPU profile in pstats format; open it with python -m pstats FILE
/debug/pprof/tasks               stacks of all asyncio tasks and threads
"""

_profiling = asyncio.Lock()


async def handle(path, query_string):
    """Serve one profiling request; return ``(status, content_type, body)``."""
    if path == "/debug/pprof/":
        return 200, TEXT, INDEX
    if path == "/debug/pprof/tasks":
        return 200, TEXT, dump_stacks().encode()
    if path == "/debug/pprof/profile":
        return await cpu_profile(query_string)
    return 404, TEXT, b"Not Found\n"


async def cpu_profile(query_string):
    values = parse_qs(query_string.decode("latin-1")).get("seconds", [str(DEFAULT_PROFILE_SECONDS)])
    try:
        seconds = float(values[0])
    except ValueError:
        seconds = -1.0
    if not 0 < seconds <= MAX_PROFILE_SECONDS:
        message = f"seconds={values[0]!r} is invalid: expected a number greater than 0 and at most {MAX_PROFILE_SECONDS}\n"
        return 400, TEXT, message.encode()

    # cProfile hooks one thread at a time, and two profiles would fight
    # over that hook.
    if _profiling.locked():
        return 409, TEXT, b"A profile is already being recorded; try again when it ends.\n"

    async with _profiling:
        profiler = cProfile.Profile()
        profiler.enable()
        try:
            await asyncio.sleep(seconds)
        finally:
            profiler.disable()
    profiler.create_stats()
    return 200, BINARY, marshal.dumps(profiler.stats)


def dump_stacks():
    """Return the stacks of every asyncio task of the running loop and of every thread."""
    output = io.StringIO()
    tasks = sorted(asyncio.all_tasks(), key=lambda task: task.get_name())
    output.write(f"{len(tasks)} asyncio tasks\n\n")
    for task in tasks:
        output.write(f"Task {task.get_name()} {task.get_coro()!r}\n")
        for frame in task.get_stack():
            output.write("".join(traceback.format_stack(frame, limit=1)))
        output.write("\n")

    names = {thread.ident: thread.name for thread in threading.enumerate()}
    frames = sys._current_frames()
    output.write(f"{len(frames)} threads\n\n")
    for ident, frame in frames.items():
        output.write(f"Thread {names.get(ident, ident)}\n")
        output.write("".join(traceback.format_stack(frame)))
        output.write("\n")
    return output.getvalue()
