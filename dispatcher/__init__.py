"""The township command room's dispatcher: the hub, its domain core, its store and timers."""

__version__ = "0.1.0"
