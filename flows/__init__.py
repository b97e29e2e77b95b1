"""Prefect flows: orchestration only; every step is a function from `mmops.stages`."""

from mmops.env import configure_tool_env

configure_tool_env()
