"""The push gateway: the HTTP app departments and community work stations send files to (app), what runs
after a batch lands (trigger), and the client of Airflow's REST API that wakes a running scheduler."""
