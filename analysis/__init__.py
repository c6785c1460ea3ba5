"""Runs (MLflow or CSV) -> DataFrames -> FPI, optimal LRG, the mIoU-drop estimator, plans for the
next sweep, plots and the report. No Ray.
"""
