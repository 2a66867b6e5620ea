"""`make bench`: the pipeline against plain baselines in the same run (run), and connector throughput
(connectors)."""
