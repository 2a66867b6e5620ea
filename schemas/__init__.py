"""The unified schema: dataset contracts, division rules, code checks. Imports nothing of ours."""
