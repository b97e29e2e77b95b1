"""Production monitoring: what the served model sees, compared with what it was trained on.

summary.py  per-modality summary features of one raw input (never the raw media or text)
log.py      the prediction log and feedback that `mmops serve` / `mmops predict` append to
reference.py  the training reference saved at registration
drift.py      a window of the log tested against it, and the retrain decision
report.py     drift.json's HTML and Markdown renderings
"""
