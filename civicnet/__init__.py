"""The civicnet CLI, settings and demo generator: composition only, no domain logic of its own."""
