"""Everything that talks to Ray: search spaces -> Tuner, schedulers, search algorithms,
MLflow tracking, resume, cluster addresses, the ``spectral-sweep`` CLI and the Python API.

The only package of the project that imports Ray (and it does so lazily, inside functions).
The Python API (:mod:`orchestrator.api`)::

    import orchestrator
    result = orchestrator.sweep("smoke", tracking_uri="sqlite:///mlflow.db")
    result.result_grid, result.experiment, result.optimal_lrg(), result.estimator()
"""

from orchestrator.api import SweepResult, open_sweep, restore, sweep
from trainables.model_registry import register_model

__all__ = ["SweepResult", "open_sweep", "register_model", "restore", "sweep"]
