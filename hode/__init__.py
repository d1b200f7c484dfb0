"""HODE: tiled, filtered, parallel-offloaded pedestrian detection on high-resolution video."""

__version__ = "0.1.0"
