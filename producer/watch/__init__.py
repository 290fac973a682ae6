"""The S3 drop folder as a service: `batch-router watch` (cmd), the watcher, claims, store, SQS."""
