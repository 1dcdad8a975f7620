"""Benchmarks: suites of (env, agent, seed) runs and probes, and their reports (the top layer with `recgym.cli`).

``suite`` (TOML format, validation; ``validate``: construction checks of env kwargs, agent configs, devices) ->
``grid`` (run specs) -> ``run`` (one run or probe into ``runs/``) -> ``backends`` (local loop, Ray) ; ``report``
(tables, layouts, plots) reads ``runs/``. ``probes`` names the measurements that are not agent runs (``perf`` for
speed and memory, ``quality`` for models); ``references`` registers the ``gt_oracle`` evaluation reference.
Shipped suites: ``suites/`` (see its README).
"""
