"""Prefect entry points of mmops: the flows a deployment or `prefect` names.

Thin on purpose: the flows and their tasks live in `mmops.orchestrate` (so the `mmops` CLI can run
them without importing this package); this package only names them for Prefect:

    flows.retrain:retrain        validate -> preprocess -> train -> evaluate -> register/gate
    flows.watch:watch_data       start `mmops-retrain/manual` when the dataset changes
    flows.monitor:monitor_drift  start `mmops-retrain/manual` when served traffic drifts
    python -m flows.deploy       register the deployments with a Prefect server
"""
