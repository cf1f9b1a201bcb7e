"""
Sampling profiles of a server under test with py-spy, and a text summary
of where its time went.

py-spy reads the stacks of the target process from outside, so the server
runs unchanged. ``--nonblocking`` keeps py-spy from pausing it for every
sample, at the price of an occasional torn stack.
"""

import asyncio
import collections
import contextlib
import signal
import sys
from pathlib import Path

from sse.embedded_nats import find_program

SAMPLES_PER_SECOND = 200


def find_py_spy():
    return find_program("py-spy", "py-spy")


@contextlib.asynccontextmanager
async def recording(pid, output):
    """Record the stacks of process ``pid`` into ``output`` (collapsed-stack text) while the block runs."""
    process = await asyncio.create_subprocess_exec(
        find_py_spy(), "record", "--pid", str(pid), "--rate", str(SAMPLES_PER_SECOND),
        "--format", "raw", "--output", str(output), "--nonblocking",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )
    # py-spy needs a moment to attach before the first sample.
    await asyncio.sleep(1.0)
    try:
        yield
    finally:
        # On SIGINT py-spy stops sampling and writes the file.
        process.send_signal(signal.SIGINT)
        await process.wait()


def summarize(path, top=20):
    """
    Return a Markdown summary of a collapsed-stack file: the functions
    with the most samples on top of the stack (self) and anywhere in it
    (total), as percentages of all samples.
    """
    own = collections.Counter()
    total = collections.Counter()
    samples = 0
    for line in Path(path).read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        count = int(count)
        samples += count
        frames = [_short(frame) for frame in stack.split(";")]
        own[frames[-1]] += count
        for frame in set(frames):
            total[frame] += count
    if not samples:
        return "No samples.\n"

    lines = [f"{samples} samples", "", "| self % | function |", "|---|---|"]
    lines += [f"| {100 * count / samples:.1f} | `{frame}` |" for frame, count in own.most_common(top)]
    lines += ["", "| total % | function |", "|---|---|"]
    lines += [f"| {100 * count / samples:.1f} | `{frame}` |" for frame, count in total.most_common(top)]
    return "\n".join(lines) + "\n"


def _short(frame):
    """Turn py-spy's ``function (path/to/module.py:line)`` into ``function (package/module.py)``."""
    name, _, location = frame.partition(" (")
    location = location.rstrip(")").rsplit(":", 1)[0]
    parts = Path(location).parts
    if "site-packages" in parts:
        parts = parts[parts.index("site-packages") + 1:]
    else:
        parts = parts[-2:]
    return f"{name} ({'/'.join(parts)})"


if __name__ == "__main__":
    print(summarize(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 20))
