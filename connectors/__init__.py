"""Connectors: pull department feeds (files, SQL, ...) and yield raw payloads with cursor state."""
