"""Prefect entry point `flows.monitor:monitor_drift` (the flow itself: `mmops.orchestrate.monitor`)."""

from mmops.orchestrate.monitor import monitor_drift

__all__ = ["monitor_drift"]
