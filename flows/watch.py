"""Prefect entry point `flows.watch:watch_data` (the flow itself: `mmops.orchestrate.watch`)."""

from mmops.orchestrate.watch import watch_data

__all__ = ["watch_data"]
