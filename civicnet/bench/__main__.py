"""`python -m civicnet.bench`: see civicnet.bench.run."""

from civicnet.bench.run import main

raise SystemExit(main())
