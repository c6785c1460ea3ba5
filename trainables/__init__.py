"""Everything that runs inside one trial, as plain PyTorch and runnable without Ray: data sets,
block-wise labels, models with feature truncation, soft filter pruning, FLOPs, the spectral CE
analysis, metrics and the train/evaluate loop.
"""
