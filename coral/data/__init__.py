"""Data: loaders for real formats, preprocessing, the embedded default dataset."""

from coral.data.dataset import CoralDataset, CsvColumns, DataConfig, Interactions, RawData, build_dataset
from coral.data.loaders import load_raw
from coral.data.registry import load_dataset

__all__ = [
    "CoralDataset", "DataConfig", "Interactions", "RawData", "build_dataset", "CsvColumns", "load_raw", "load_dataset",
]
