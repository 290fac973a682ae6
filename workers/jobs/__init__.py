"""A job's life before and around the fleet: planning it from Parquet footers
(:mod:`workers.jobs.plan`), registering and enqueuing it, waiting for it and resuming it
(:mod:`workers.jobs.submit`).

Used alike by the ``batch-router`` CLI and the drop-folder watcher (producer/) and by
beat's nightly tick (workers/nightly.py), so it lives in the lower layer: it imports
neither producer/ nor the worker's app (workers/worker.py), and sends tasks by name.
"""
