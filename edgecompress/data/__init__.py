"""Datasets, image decoding and scaling, and the calibration images."""
