"""Everything that talks to Ray: search spaces -> Tuner, schedulers, search algorithms,
MLflow tracking, resume, cluster addresses and the ``spectral-sweep`` CLI.

The only package of the project that imports Ray (and it does so lazily, inside functions).
"""
