"""Data: loaders for real formats, preprocessing, the embedded default dataset."""

from coral.data.dataset import CoralDataset, DataConfig, Interactions, RawData, build_dataset
from coral.data.loaders import CsvLayout, load_raw
from coral.data.registry import load_dataset

__all__ = ["CoralDataset", "DataConfig", "Interactions", "RawData", "build_dataset", "CsvLayout", "load_raw", "load_dataset"]
