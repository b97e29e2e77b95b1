"""Orchestration: the Prefect retrain flow (stage tasks, caching, retries, notifications), the
data watch, deployments and the local scheduler. Calls `mmops.stages`; nothing below imports it."""

from mmops.env import configure_tool_env

configure_tool_env()  # PREFECT_HOME etc. before prefect is imported
