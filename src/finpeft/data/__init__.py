"""Data: catalog ids and user files -> checked, labelled train/valid/test splits."""
from finpeft.data.catalog import CATALOG, SENTIMENT
from finpeft.data.load import DatasetSplits, load_dataset_splits, load_raw, read_table

__all__ = ["CATALOG", "SENTIMENT", "DatasetSplits", "load_dataset_splits", "load_raw", "read_table"]
