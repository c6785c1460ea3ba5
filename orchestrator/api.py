"""The Python API: launch a sweep as the CLI does, get back an object shaped like Ray Tune's
results with MLflow and the analysis one call away.

::

    import orchestrator

    result = orchestrator.sweep("smoke", tracking_uri="sqlite:///mlflow.db", quiet=True)
    result.result_grid      # ray.tune.ResultGrid (a strategy's: its reference phase)
    result.experiment       # mlflow.entities.Experiment
    result.optimal_lrg()    # each group's FPI-optimal LRG (a DataFrame)
    result.estimator()      # the mIoU-drop estimator fitted on this sweep
    result.plan(lrgs=[9, 5])  # plans from this sweep's reference runs
    orchestrator.restore("smoke")  # continue an interrupted sweep

Thin on purpose: options are the ``sweep`` command's (same names, same checks, through
:func:`orchestrator.commands.sweep_config.sweep_namespace`), and every helper calls what the
``analyze`` and ``plan`` commands call.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from orchestrator.settings import DEFAULT_STORAGE, SweepOutcome, SweepSettings
from trainables.errors import InputError
from trainables.run_schema import Strategy

if TYPE_CHECKING:
    import pandas as pd

    from analysis import Analysis, Estimator, Plan

#: Space files the ``space`` argument recognises by suffix.
SPACE_SUFFIXES = (".yaml", ".yml", ".toml")


@dataclass
class SweepResult:
    """A sweep's outcome with Tune's results, its MLflow experiment and the analysis helpers.

    ``outcome`` is what the command prints from: a ``SweepOutcome`` (exhaustive), or the
    strategy's ``EstimateOutcome`` / ``AdaptiveOutcome`` (``None`` for :func:`open_sweep`).
    """

    settings: SweepSettings
    outcome: Any = None
    _analysis: Any = field(default=None, repr=False)

    # ------------------------------------------------------------------ where things are

    @property
    def name(self) -> str:
        return self.settings.name

    @property
    def path(self) -> Path:
        """Tune's experiment directory."""
        return self.settings.experiment_path

    @property
    def tracking_uri(self) -> str:
        return self.settings.tracking_uri

    @property
    def sweeps(self) -> list[SweepOutcome]:
        """Each Tune sweep this run made: one, or a strategy's phases in order."""
        if self.outcome is None:
            return []
        if isinstance(self.outcome, SweepOutcome):
            return [self.outcome]
        extra = getattr(self.outcome, "phases", None) or [
            getattr(self.outcome, "confirmations", None)
        ]
        return [self.outcome.references, *[p for p in extra if p is not None]]

    @property
    def result_grid(self) -> Any:
        """Tune's ``ResultGrid``: of this call, else read back from the sweep's directory."""
        sweeps = self.sweeps
        if sweeps and sweeps[0].results is not None:
            return sweeps[0].results
        from orchestrator.tune import read_results

        return read_results(self.settings)

    @property
    def experiment(self) -> Any:
        """The MLflow experiment (``mlflow.entities.Experiment``) holding the runs."""
        from analysis.mlflow_runs import client_for

        found = client_for(self.tracking_uri).get_experiment_by_name(
            self.settings.mlflow_experiment
        )
        if found is None:
            raise InputError(
                f"no MLflow experiment {self.settings.mlflow_experiment!r} at {self.tracking_uri}"
            )
        return found

    # ------------------------------------------------------------------ counts

    @property
    def finished(self) -> int:
        """Trials that reached their last epoch (every phase)."""
        return sum(s.finished for s in self.sweeps)

    @property
    def errored(self) -> int:
        return sum(s.errored for s in self.sweeps)

    @property
    def interrupted(self) -> bool:
        """Whether trials were left unfinished (:func:`restore` continues them)."""
        return any(s.unfinished for s in self.sweeps)

    # ------------------------------------------------------------------ analysis

    def runs(self) -> pd.DataFrame:
        """The finished trial runs, one row each (``analysis.load_runs_mlflow``)."""
        from analysis import load_runs_mlflow

        return load_runs_mlflow(self.tracking_uri, self.settings.mlflow_experiment)

    def analysis(self, refresh: bool = False) -> Analysis:
        """What ``spectral-sweep analyze --experiment`` computes, cached (``refresh`` re-reads)."""
        if self._analysis is None or refresh:
            from analysis import analyze

            source = f"MLflow experiment {self.settings.mlflow_experiment!r} at {self.tracking_uri}"
            self._analysis = analyze(self.runs(), source=source)
        return self._analysis

    def optimal_lrg(self) -> pd.DataFrame:
        """Each truncation group's FPI-minimising LRG."""
        return self.analysis().optimal

    def estimator(self) -> Estimator:
        """The mIoU-drop estimator fitted on this sweep (InputError when it cannot be fitted)."""
        fitted = self.analysis().estimator
        if fitted is None:
            why = next((n for n in self.analysis().notes if n.startswith("no estimator")), "")
            raise InputError(f"sweep {self.name!r}: {why or 'no estimator fitted'}")
        return fitted

    def pareto_front(self) -> pd.DataFrame:
        """The GFLOPs-mIoU Pareto front of the measured configurations, per data set."""
        from analysis.pareto import pareto_front

        return pareto_front(self.analysis().rows)

    def plan(
        self,
        run_id: str | None = None,
        lrgs: list[int] | None = None,
        max_drop: float | None = None,
        estimator: Any = "paper",
    ) -> list[Plan]:
        """Plans from this sweep's reference runs (or one ``run_id``), as ``spectral-sweep plan``
        makes them. ``estimator``: ``"paper"``, an ``estimator.json`` path, an ``Estimator``, or
        ``"self"`` for this sweep's own fit."""
        from analysis import Estimator, load_estimator, plan_reference
        from analysis.references import reference_from_run, references_from_experiment
        from orchestrator.commands import check_max_drop

        check_max_drop(max_drop)
        if isinstance(estimator, Estimator):
            chosen = estimator
        elif estimator == "self":
            chosen = self.estimator()
        else:
            chosen = load_estimator(estimator)
        if run_id is not None:
            references = [reference_from_run(self.tracking_uri, run_id)]
        else:
            references = references_from_experiment(
                self.tracking_uri, self.settings.mlflow_experiment
            )
        return [plan_reference(chosen, ref, lrgs, max_drop) for ref in references]


# --------------------------------------------------------------------- launching


def _space_options(space: Any) -> dict[str, Any]:
    """The ``space`` argument as the command's options: a name, a file, or the space."""
    from search_spaces import SearchSpace

    if isinstance(space, SearchSpace | dict):
        return {"space_object": space}
    if isinstance(space, Path) or (
        isinstance(space, str) and (space.endswith(SPACE_SUFFIXES) or Path(space).is_file())
    ):
        return {"space_file": str(space)}
    if isinstance(space, str):
        return {"space": space}
    raise InputError(f"space {space!r} must be a built-in name, a space file or a SearchSpace")


def _namespace(space: Any, config: str | Path | None, options: dict[str, Any]) -> Any:
    from orchestrator.commands.sweep_config import load_config, sweep_namespace

    merged = dict(load_config(config)) if config is not None else {}
    merged.update(options)
    given = _space_options(space) if space is not None else {}
    object_space = given.pop("space_object", None)
    if given or object_space is not None:
        for key in ("space", "space_file"):
            merged.pop(key, None)  # the argument wins over a config file's space
    merged.update(given)
    args = sweep_namespace(merged, (), "sweep()")
    if object_space is not None:
        args.space_object = object_space
    return args


def sweep(space: Any = None, *, config: str | Path | None = None, **options: Any) -> SweepResult:
    """Run a sweep as ``spectral-sweep sweep`` does and return its :class:`SweepResult`.

    ``space``: a built-in name (``"demo"``), a space file, a ``SearchSpace`` or a mapping.
    ``options``: the command's flags by name (``name``, ``storage``, ``tracking_uri``,
    ``search``, ``scheduler``, ``cpus_per_trial``, ``strategy``, ``set={"epochs": 1}``, ...);
    ``config``: a ``--config`` YAML file they override. Bad options raise ``InputError`` (a
    ``ValueError``) before Ray starts.
    """
    if options.get("resume"):
        raise InputError("use orchestrator.restore(name) to continue a sweep")
    if options.get("dry_run"):
        raise InputError("dry_run: use `spectral-sweep sweep --dry-run` (it prints, runs nothing)")
    return _launch(_namespace(space, config, options))


def restore(name: str, storage: str | Path = DEFAULT_STORAGE, **options: Any) -> SweepResult:
    """Continue the interrupted sweep ``name`` in ``storage`` (its saved settings; ``address``
    and ``quiet`` may be given) and return its :class:`SweepResult`."""
    allowed = {"address", "quiet", "tracking_uri"}
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise InputError(f"restore() takes {', '.join(sorted(allowed))}, not {unknown[0]!r}")
    return _launch(
        _namespace(None, None, {**options, "name": name, "storage": str(storage), "resume": True})
    )


def open_sweep(name: str, storage: str | Path = DEFAULT_STORAGE) -> SweepResult:
    """A finished (or interrupted) sweep read back without running anything."""
    from orchestrator.settings import load_settings

    path = Path(storage).expanduser().resolve() / name
    return SweepResult(load_settings(path))


def _launch(args: Any) -> SweepResult:
    """Settings from the namespace, then the strategy's or the plain sweep's run."""
    from orchestrator.commands.sweep import settings_from_args

    settings, resume = settings_from_args(args)
    if settings.strategy == Strategy.ADAPTIVE:
        from orchestrator.adaptive import run_adaptive

        return SweepResult(settings, run_adaptive(settings, resume=resume))
    if settings.strategy == Strategy.ESTIMATE:
        from orchestrator.strategy import run_estimate

        return SweepResult(settings, run_estimate(settings, resume=resume))
    from orchestrator.tune import run_sweep

    return SweepResult(settings, run_sweep(settings, resume=resume))


__all__ = ["SweepResult", "open_sweep", "restore", "sweep"]
