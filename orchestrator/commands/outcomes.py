"""What ``sweep`` prints when it ends: a sweep's summary and exit code (:func:`print_outcome`), and
after a strategy's phases each phase's summary, then one line per group (the paper strategy's
plans, the adaptive strategy's picks)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from trainables.run_schema import Role, Tag


def print_outcome(outcome: Any, settings: Any) -> int:
    """One summary block; exit 0 (all ended well), 1 (some failed, or tracking writes lost) or
    130 (interrupted: the exact command that continues it is printed)."""
    from orchestrator.uris import ui_command

    stopped = f", {outcome.stopped_early} stopped early" if outcome.stopped_early else ""
    print(
        f"sweep {outcome.name}: {outcome.finished} finished{stopped}, {outcome.errored} failed, "
        f"{outcome.unfinished} unfinished of {outcome.total} trials"
    )
    print(f"Tune results: {outcome.path}")
    print(f"MLflow experiment {settings.mlflow_experiment!r} at {outcome.tracking_uri}")
    print(f"open the UI: {ui_command(outcome.tracking_uri)}")
    if settings.study_name:
        print(f"Optuna study {settings.study_name!r} at {settings.optuna_storage}")
    if outcome.pareto is not None and len(outcome.pareto):
        print_front(outcome.pareto)
    code = 0
    if outcome.tracking_lost:
        print(
            f"{len(outcome.tracking_lost)} tracking write(s) could not be made to "
            f"{outcome.tracking_uri} (first: {outcome.tracking_lost[0]}); once the store "
            f"answers, {resume_command(settings)} repairs the runs from Tune's results",
            file=sys.stderr,
        )
        code = 1
    if outcome.unfinished:
        print(f"sweep interrupted; continue it with: {resume_command(settings)}", file=sys.stderr)
        return 130
    if outcome.errored:
        print(
            f"{outcome.errored} trial(s) failed; their MLflow runs are FAILED with the error in "
            f"tag {Tag.ERROR}",
            file=sys.stderr,
        )
        code = 1
    return code


def print_front(front: Any) -> None:
    """The Pareto front of a multi-objective sweep as a table (per data set, by GFLOPs)."""
    from analysis.pareto import front_table
    from orchestrator.table import format_table

    table = front_table(front).drop(columns=["trial_id"], errors="ignore")
    print(f"Pareto front (GFLOPs against mIoU), {len(table)} configuration(s):")
    print(format_table(table.to_dict("records"), list(table.columns)))


def resume_command(settings: Any) -> str:
    """The exact command that continues (or repairs) the sweep."""
    return (
        f"spectral-sweep sweep --resume --name {settings.name} "
        f"--storage {Path(settings.storage).expanduser().resolve()}"
    )


def print_estimate(outcome: Any, settings: Any) -> int:
    """The phases' summaries, then one line per planned group; exit codes as a sweep's."""
    code = print_outcome(outcome.references, settings)
    if outcome.confirmations is not None:
        code = max(code, print_outcome(outcome.confirmations, settings))
    if outcome.references.unfinished:
        return code
    print()
    print(format_plans(outcome.plans))
    for label, why in outcome.skipped.items():
        print(f"{label}: {why}; nothing predicted", file=sys.stderr)
    print(
        f"estimate strategy: {outcome.trainings} trainings; predictions are MLflow runs with "
        f"tag {Tag.ROLE} = {Role.PREDICTION} in {settings.mlflow_experiment!r}"
    )
    print(savings("estimate", outcome.trainings, settings))
    return code


def savings(strategy: str, trainings: int, settings: Any) -> str:
    """What the strategy saved against the exhaustive sweep of the same space."""
    total = len(settings.search_space())
    saved = max(total - trainings, 0)
    share = saved / total if total else 0.0
    return (
        f"{strategy} strategy saved {saved} of the {total} trainings an exhaustive sweep of "
        f"this space runs ({share:.0%})"
    )


def print_adaptive(outcome: Any, settings: Any) -> int:
    """Each phase's summary, then one line per group: pick, trainings; exit codes as a
    sweep's."""
    from orchestrator.table import format_table

    code = print_outcome(outcome.references, settings)
    for phase in outcome.phases:
        code = max(code, print_outcome(phase, settings))
    if outcome.interrupted:
        return code
    rows = [
        {
            "group": p.group,
            "pick": p.candidate.name,
            "gflops": p.candidate.gflops,
            "trainings": p.trainings,
        }
        for p in outcome.picks
    ]
    print()
    print(format_table(rows, ["group", "pick", "gflops", "trainings"]))
    for label, why in outcome.skipped.items():
        print(f"{label}: {why}; nothing planned", file=sys.stderr)
    for line in outcome.failed:
        print(f"{line}: training failed; its group stopped there", file=sys.stderr)
    print(
        f"adaptive strategy: {outcome.trainings} trainings, {outcome.phase_count} phase(s) "
        f"after the references; why each was trained: tag {Tag.REASON} on the runs with "
        f"{Tag.ROLE} = {Role.CANDIDATE} in {settings.mlflow_experiment!r}"
    )
    print(savings("adaptive", outcome.trainings, settings))
    return code


def format_plans(plans: list[Any]) -> str:
    """One row per planned group: reference, recommendation and its prediction."""
    from analysis.strategy import TRUNCATION
    from orchestrator.table import format_table

    rows = []
    for planned in plans:
        plan, ref = planned.plan, planned.reference
        row: dict[str, Any] = {
            "group": planned.group.label,
            "kind": planned.group.kind,
            "reference_miou": ref.miou,
            "recommended": plan.recommended if plan.recommended is not None else "-",
        }
        if plan.recommended is not None:
            column = "lrg" if planned.group.kind == TRUNCATION else "annotation_nu_max"
            pick = plan.table.loc[plan.table[column] == plan.recommended].iloc[0]
            row.update(
                predicted_miou=pick["predicted_miou"],
                predicted_drop=pick["predicted_drop"],
                gflops=pick["gflops"],
            )
        rows.append(row)
    columns = ["group", "kind", "reference_miou", "recommended", "predicted_miou"]
    return format_table(rows, [*columns, "predicted_drop", "gflops"])
