"""Data: catalog ids and user files -> checked, labelled train/valid/test splits."""
from .catalog import CATALOG, SENTIMENT
from .load import DatasetSplits, load_dataset_splits, load_raw, read_table

__all__ = ["CATALOG", "SENTIMENT", "DatasetSplits", "load_dataset_splits", "load_raw", "read_table"]
