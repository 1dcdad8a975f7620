"""Performance probes: plain functions that measure speed or memory and return table rows.

Each is called by a ``recgym perf`` command and, through `recgym.benchmarks.probes`, by the ``throughput``
suite. They are not (env, agent, seed) runs, so they live beside the grid rather than in it.
"""
