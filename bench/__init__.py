"""
A benchmark harness for ``runsse``: a load client, a publisher, a floor
server on uvicorn and a runner that compares them. ``python bench/run.py
--help`` lists the scenarios.
"""
