"""Prefect entry point `flows.retrain:retrain` (the flow itself: `mmops.orchestrate.retrain`)."""

from mmops.orchestrate.retrain import retrain

__all__ = ["retrain"]

if __name__ == "__main__":
    retrain()
