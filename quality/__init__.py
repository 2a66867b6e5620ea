"""Quality: conform raw batches to their contract, quarantine bad rows with reasons, gate batches."""
