"""`python -m mmops.cli ...` (and `torchrun ... -m mmops.cli train`): the `mmops` command."""

from mmops.cli import app

app()
