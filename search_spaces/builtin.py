"""The built-in spaces, as plain data in the file schema (see :mod:`search_spaces.schema`).

Band limits scale with the input: at 513 the paper's LRG sizes 129..17 are nu_max 64..8 and its
annotation limits are nu_max 256, 32, 16, 8 (256 = pixel-wise); at 65 (the demo) the same bands
are LRG 17, 13, 11, 9, 7, 5, 3 and annotation nu_max 32, 4, 2, 1.
"""

from __future__ import annotations

from typing import Any

from trainables.dataset_registry import FIXED_NUM_CLASSES
from trainables.grids import PAPER_ANNOTATION_BANDS, PAPER_LRG_SIZES
from trainables.model_registry import MODEL_NAMES

MODELS = list(MODEL_NAMES)
PAPER_DATASETS = ["voc", "deepglobe", "cityscapes"]

#: Paper training settings per data set (section 4; appendix A.9). VOC trains on the SBD
#: augmented set (10,582 images) as the paper does ("further augmented by the extra
#: annotations from Hariharan et al. 2011").
PAPER_PER_DATASET: dict[str, dict[str, Any]] = {
    "voc": {
        "lr": 0.0007,
        "epochs": 100,
        "num_classes": FIXED_NUM_CLASSES["voc"],
        "extra": {"train_split": "train_aug"},
    },
    "deepglobe": {"lr": 0.007, "epochs": 600, "num_classes": FIXED_NUM_CLASSES["deepglobe"]},
    "cityscapes": {"lr": 0.001, "epochs": 200, "num_classes": FIXED_NUM_CLASSES["cityscapes"]},
}
#: ImageNet-pretrained encoders as the paper trains them (``--set pretrained=PATH`` for a local
#: file), and FLOPs on the paper's Table 2 scale.
PAPER_FIXED: dict[str, Any] = {
    "backbone": "resnet101",
    "input_size": 513,
    "batch_size": 8,
    "pretrained": "true",
    "flops_convention": "paper",
}
PAPER_LRGS = list(PAPER_LRG_SIZES)
PAPER_PRUNE_RATES = [0.0, 0.2, 0.4, 0.6]
PAPER_ANNOTATION_NU = list(PAPER_ANNOTATION_BANDS)


def _decoder_rates(rates: list[float], decoder_rate: float = 0.2) -> dict[float, dict[str, Any]]:
    """The paper prunes the decoder at 20% whenever the encoder is pruned at all."""
    return {p: {"decoder_prune_rate": decoder_rate if p > 0 else 0.0} for p in rates}


PAPER_TRUNCATION: dict[str, Any] = {
    "name": "paper-truncation",
    "description": (
        "Paper LRG x SFP sweep: 2 models x VOC/DeepGlobe/Cityscapes x LRG 129..17 x prune 0-0.6 "
        "(ResNet-101, 513 crops)"
    ),
    "fixed": PAPER_FIXED,
    "grid": {
        "model": MODELS,
        "dataset": PAPER_DATASETS,
        "lrg": PAPER_LRGS,
        "prune_rate": PAPER_PRUNE_RATES,
    },
    "derived": {"dataset": PAPER_PER_DATASET, "prune_rate": _decoder_rates(PAPER_PRUNE_RATES)},
}

PAPER_ANNOTATION: dict[str, Any] = {
    "name": "paper-annotation",
    "description": (
        "Paper block-wise annotation sweep: 2 models x VOC/DeepGlobe/Cityscapes x "
        "annotation nu_max 256 (pixel-wise), 32, 16, 8"
    ),
    "fixed": PAPER_FIXED,
    "grid": {"model": MODELS, "dataset": PAPER_DATASETS, "annotation_nu_max": PAPER_ANNOTATION_NU},
    "derived": {"dataset": PAPER_PER_DATASET},
}

#: Small enough to train on a laptop CPU in seconds per trial; native grid 17 at input 65.
DEMO_FIXED: dict[str, Any] = {
    "backbone": "resnet18",
    "input_size": 65,
    "num_classes": 4,
    "batch_size": 4,
    "epochs": 4,
    "eval_every": 4,  # evaluate (and checkpoint) after the last epoch only: a fifth of the time
    "lr": 0.05,
    "train_length": 32,
    "eval_length": 16,
    "num_threads": 1,
    "seed": 0,
}
DEMO_PRUNE_RATES = [0.0, 0.4]

DEMO: dict[str, Any] = {
    "name": "demo",
    "description": (
        "CPU demo on synthetic data (input 65, ResNet-18): LRG sweep 17/9/5/3, prune 0.4 pair, "
        "block-wise annotation nu_max 4/2/1"
    ),
    "fixed": DEMO_FIXED,
    "grids": [
        {  # LRG sweep, unpruned: both models, both data sets
            "model": MODELS,
            "dataset": ["synthetic-smooth", "synthetic-fine"],
            "lrg": [17, 9, 5, 3],
            "prune_rate": [0.0],
        },
        {  # SFP at 40% (decoder 20%), native and a small grid
            "model": MODELS,
            "dataset": ["synthetic-smooth"],
            "lrg": [17, 5],
            "prune_rate": [0.4],
        },
        {  # block-wise labels at the native grid; its pixel-wise reference is the LRG-17 trial
            "model": ["deeplabv3plus"],
            "dataset": ["synthetic-smooth", "synthetic-fine"],
            "lrg": [17],
            "prune_rate": [0.0],
            "annotation_nu_max": [4, 2, 1],
        },
    ],
    "derived": {"prune_rate": _decoder_rates(DEMO_PRUNE_RATES)},
}

SMOKE: dict[str, Any] = {
    "name": "smoke",
    "description": "4 one-epoch trials on tiny synthetic data (input 33), for CI",
    "fixed": {
        "backbone": "resnet18",
        "dataset": "synthetic-smooth",
        "input_size": 33,
        "num_classes": 3,
        "batch_size": 4,
        "epochs": 1,
        "lr": 0.01,
        "train_length": 8,
        "eval_length": 4,
        "num_threads": 1,
        "seed": 0,
    },
    "grid": {"model": MODELS, "lrg": [9, 5]},
}

BUILTIN_SPACES: tuple[dict[str, Any], ...] = (PAPER_TRUNCATION, PAPER_ANNOTATION, DEMO, SMOKE)
