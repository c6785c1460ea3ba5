"""What ``sweep`` prints after a strategy's phases: each phase's summary, then one line per group
(the paper strategy's plans, the adaptive strategy's picks); exit codes as a sweep's."""

from __future__ import annotations

import sys
from typing import Any

from orchestrator.commands.sweep import print_outcome
from trainables.run_schema import Role, Tag


def print_estimate(outcome: Any, settings: Any) -> int:
    """The phases' summaries, then one line per planned group; exit codes as a sweep's."""
    code = print_outcome(outcome.references, settings)
    if outcome.confirmations is not None:
        code = max(code, print_outcome(outcome.confirmations, settings))
    if outcome.references.unfinished:
        return code
    print()
    print(format_plans(outcome.plans))
    for label in outcome.skipped:
        print(f"{label}: reference trial did not finish; nothing predicted", file=sys.stderr)
    print(
        f"estimate strategy: {outcome.trainings} trainings; predictions are MLflow runs with "
        f"tag {Tag.ROLE} = {Role.PREDICTION} in {settings.mlflow_experiment!r}"
    )
    return code


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
    for label in outcome.skipped:
        print(f"{label}: reference trial did not finish; nothing planned", file=sys.stderr)
    for line in outcome.failed:
        print(f"{line}: training failed; its group stopped there", file=sys.stderr)
    print(
        f"adaptive strategy: {outcome.trainings} trainings, {outcome.phase_count} phase(s) "
        f"after the references; why each was trained: tag {Tag.REASON} on the runs with "
        f"{Tag.ROLE} = {Role.CANDIDATE} in {settings.mlflow_experiment!r}"
    )
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
