"""What ``spectral-sweep plan`` does with a recommendation: the ``train`` command that runs it,
the space file that sweeps it (``--out FILE``), and the progress lines while FLOPs are counted.

A plan from MLflow knows the reference run's whole config (its params): the recommended trial is
that config at the recommended LRG. A label-only plan knows only the data set, the input and
(with ``--model``) the architecture: the command and file hold those, and the settings they lack
are named.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from trainables.config import TrialConfig
from trainables.errors import InputError

T = TypeVar("T")


@dataclass(frozen=True)
class Recommendation:
    """The recommended trial of one plan: a full config, or the settings that are known."""

    config: TrialConfig | dict[str, Any]
    missing: list[str] = field(default_factory=list)  # settings the source does not give

    @property
    def command(self) -> str:
        """The ``spectral-sweep train`` command of the trial."""
        from orchestrator.commands.train import train_command

        return train_command(self.config)


# --------------------------------------------------------------------- progress


@contextmanager
def counting(what: str) -> Iterator[None]:
    """One stderr line before FLOPs are counted (``counting FLOPs of <what> ...``) and one with
    the seconds after; counting a ResNet-101 at 513 takes half a minute."""
    print(f"counting FLOPs of {what} ...", file=sys.stderr, flush=True)
    began = time.perf_counter()
    yield
    print(f"counted FLOPs in {time.perf_counter() - began:.1f} s", file=sys.stderr, flush=True)


def architecture_label(
    model: str, backbone: str, input_size: int, prune_rate: float = 0.0, decoder: float = 0.0
) -> str:
    """``deeplabv3plus/resnet101 at 513`` (with ``, prune 0.2/0.2`` when pruned)."""
    pruned = f", prune {prune_rate:g}/{decoder:g}" if prune_rate or decoder else ""
    return f"{model}/{backbone} at {input_size}{pruned}"


def count_reference(reference: Any, lrgs: Sequence[int] | None) -> None:
    """Count the FLOPs of a plan's candidate LRGs with progress lines, before ``plan_reference``
    (which then finds them counted). LRGs outside the reference's range are left to the plan,
    which names them."""
    from trainables.grids import paper_lrgs

    chosen = (
        sorted(set(lrgs), reverse=True) if lrgs else paper_lrgs(reference.input_size, reference.lrg)
    )
    valid = [int(s) for s in chosen if 3 <= s <= reference.lrg]
    if not valid:
        return
    from trainables.flops_cache import cached_gflops

    args = (reference.model, reference.backbone, reference.input_size, reference.num_classes)
    rates = (reference.prune_rate, reference.decoder_prune_rate, reference.flops_convention)
    if cached_gflops(*args, valid, *rates) is not None:
        return  # counted before (trainables.flops_cache): nothing to wait for
    label = architecture_label(
        reference.model,
        reference.backbone,
        reference.input_size,
        reference.prune_rate,
        reference.decoder_prune_rate,
    )
    with counting(f"{len(valid)} LRGs for {label} ({reference.flops_convention} convention)"):
        reference.grid_gflops(valid)


def with_progress(what: str, work: Callable[[], T]) -> T:
    """``work()`` between the :func:`counting` lines."""
    with counting(what):
        return work()


# --------------------------------------------------------------------- recommendations


def run_configs(tracking_uri: str, run_ids: Sequence[str]) -> dict[str, TrialConfig]:
    """The full TrialConfig of each run (its params); runs whose params are not a config are
    left out."""
    from analysis.mlflow_runs import client_for
    from trainables.run_schema import from_params

    client = client_for(tracking_uri)
    out: dict[str, TrialConfig] = {}
    for run_id in dict.fromkeys(run_ids):
        try:
            out[run_id] = from_params(client.get_run(run_id).data.params)
        except InputError:
            continue
    return out


def reference_recommendation(
    plan: Any, configs: Mapping[str, TrialConfig]
) -> Recommendation | None:
    """The recommended trial of a plan from a reference run: the run's config at the
    recommended LRG (no post-hoc evaluations); None without a recommendation."""
    if plan.recommended is None:
        return None
    run_id = str(plan.context.get("run_id"))
    if run_id in configs:
        cfg = dataclasses.replace(configs[run_id], lrg=int(plan.recommended), eval_lrgs=())
        return Recommendation(cfg)
    ctx = plan.context  # params unreadable: what the plan itself knows
    known = {k: ctx[k] for k in ("model", "dataset", "backbone", "input_size") if k in ctx}
    known |= {"prune_rate": ctx.get("prune_rate", 0.0), "lrg": int(plan.recommended)}
    known["decoder_prune_rate"] = ctx.get("decoder_prune_rate", 0.0)
    return partial_recommendation(known)


def labels_only_recommendation(plan: Any, args: Any) -> Recommendation | None:
    """The recommended trial of a label-only plan: data set, input, classes, data-set options,
    the architecture of ``--model`` and the LRG; the rest is missing."""
    from orchestrator.commands.spectrum import parse_options

    if plan.recommended is None:
        return None
    ctx = plan.context
    known: dict[str, Any] = {
        "dataset": ctx["dataset"],
        "input_size": int(ctx["input_size"]),
        "num_classes": int(ctx["num_classes"]),
        "lrg": int(plan.recommended),
    }
    if args.model is not None:
        known |= {"model": args.model, "backbone": args.backbone}
    if args.data_root is not None:
        known["data_root"] = args.data_root
    if args.seed is not None:
        known["seed"] = args.seed
    options = parse_options(args.option)
    if options:
        known["extra"] = options
    counted = ("prune_rate", "decoder_prune_rate") if args.model is not None else ()
    return partial_recommendation(known, also_known=("annotation_nu_max", *counted))


def partial_recommendation(known: dict[str, Any], also_known: Sequence[str] = ()) -> Recommendation:
    """A recommendation of the settings in ``known``; the others are named as missing
    (``also_known``: settings at their default on purpose, e.g. pixel-wise labels)."""
    from search_spaces.export import missing_settings

    TrialConfig.from_dict(known)  # what is known must be valid
    datasets = [known["dataset"]] if "dataset" in known else []
    return Recommendation(dict(known), missing_settings([*known, *also_known], datasets))


def check_space_out(value: str | None) -> Path | None:
    """``--out FILE``: a ``.yaml``/``.yml`` path whose folder exists (checked before any work)."""
    if value is None:
        return None
    path = Path(value).expanduser()
    if path.suffix.lower() not in (".yaml", ".yml"):
        raise InputError(f"--out {value!r}: a space file is written as YAML; name it *.yaml")
    if path.is_dir():
        raise InputError(f"--out {value!r} is a directory; give a file name (*.yaml)")
    if path.parent.exists() and not path.parent.is_dir():
        raise InputError(f"--out {value!r}: {str(path.parent)!r} is a file, not a folder")
    if not path.parent.is_dir():
        raise InputError(f"--out {value!r}: folder {str(path.parent)!r} does not exist")
    return path


def write_recommendations(
    path: Path, recommendations: Sequence[Recommendation], name: str, source: str
) -> Path:
    """The recommended trials as a space file (one trial per plan with a recommendation)."""
    from search_spaces.export import space_name, space_of_configs, write_space

    missing = list(dict.fromkeys(m for r in recommendations for m in r.missing))
    description = f"the recommended LRG of {source}"
    comments = [description]
    if missing:
        comments.append(f"not known to the plan (TrialConfig defaults apply): {', '.join(missing)}")
    comments.append(f"rerun: {sweep_command(path)}")
    space = space_of_configs(
        space_name(name), [r.config for r in recommendations], description, source=str(path)
    )
    return write_space(space, path, comments)


def sweep_command(path: Path) -> str:
    """The command that sweeps a space file."""
    import shlex

    return f"spectral-sweep sweep --space-file {shlex.quote(str(path))}"


def print_recommendation(recommendation: Recommendation | None) -> None:
    """The ``train`` command (and what it lacks) under a plan's table."""
    if recommendation is None:
        return
    print(f"train it: {recommendation.command}")
    if recommendation.missing:
        print(f"  (not known to the plan, defaults apply: {', '.join(recommendation.missing)})")


__all__ = [
    "Recommendation",
    "architecture_label",
    "check_space_out",
    "count_reference",
    "counting",
    "labels_only_recommendation",
    "partial_recommendation",
    "print_recommendation",
    "reference_recommendation",
    "run_configs",
    "sweep_command",
    "with_progress",
    "write_recommendations",
]
