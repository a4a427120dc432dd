"""edgebench agent: runs benchmark trials on a device. Imports nothing from the orchestrator."""

__version__ = "0.1.0"
