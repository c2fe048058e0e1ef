"""`python -m hatoba` runs the command line."""

from hatoba.cli.main import main

raise SystemExit(main())
