"""Warehouse: landing, node stores, merge with history, sync along the division tree, extracts."""
