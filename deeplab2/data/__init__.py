"""Datasets, TFRecords and the input pipeline."""
