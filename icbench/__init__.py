"""icbench: architecture search and benchmarks for the Inter-layer Collision (IC) unit."""

__version__ = "0.1.0"
