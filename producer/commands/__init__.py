"""The glue of `batch-router audit`, `calibrate`, `eval`, `status`/`reconcile` and `train`."""
