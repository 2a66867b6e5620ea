"""`civicnet demo`: a generated Shenzhen (run, data, changes, defects, the push round) and the
department systems it plays (departments/: their registers, REST API and Singer tap)."""
