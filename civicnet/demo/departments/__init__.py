"""The simulated department systems the demo pulls from: public security's residents drop, civil
affairs' facility database, the health department's REST API and the justice bureau's Singer tap."""
