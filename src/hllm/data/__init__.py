"""Data layer: readers, the validation gate, splits, the synthetic demo dataset and downloads."""
