"""
Run a Python script with a log line for every slow garbage collection.

    python -m bench.gclog manage.py runsse
    python -m bench.gclog -m bench.floor --port 9135 ...
    python -m bench.gclog --disable manage.py runsse

A full (generation 2) collection walks every tracked object and stops the
event loop while it does, so with many open streams it shows up as a
latency spike. Each collection of generation 2, or of any generation that
takes longer than ``SLOW_MILLISECONDS``, is written to stderr as
``gc: generation G took T ms, collected C objects``. ``--disable`` turns
the cyclic garbage collector off instead, to measure what it costs.
"""

import gc
import runpy
import sys
import time

SLOW_MILLISECONDS = 10.0

_started = {}


def _on_collection(phase, info):
    if phase == "start":
        _started["at"] = time.perf_counter()
        return
    milliseconds = (time.perf_counter() - _started.pop("at", time.perf_counter())) * 1000
    if info["generation"] == 2 or milliseconds > SLOW_MILLISECONDS:
        print(
            f"gc: generation {info['generation']} took {milliseconds:.1f} ms, collected {info['collected']} objects",
            file=sys.stderr,
            flush=True,
        )


def main():
    if len(sys.argv) < 2:
        sys.exit("usage: python -m bench.gclog SCRIPT [ARGUMENT ...] or python -m bench.gclog -m MODULE [ARGUMENT ...]")
    if sys.argv[1] == "--disable":
        del sys.argv[1]
        gc.disable()
    gc.callbacks.append(_on_collection)
    sys.path.insert(0, "")
    if sys.argv[1] == "-m":
        sys.argv = sys.argv[2:]
        runpy.run_module(sys.argv[0], run_name="__main__", alter_sys=True)
    else:
        sys.argv = sys.argv[1:]
        runpy.run_path(sys.argv[0], run_name="__main__")


if __name__ == "__main__":
    main()
