"""Cost reports: `batch-router report` (cmd), the rollup query, its data, text and HTML."""
