"""`python -m calibviz ...`: the command line."""

from calibviz.cli import main

raise SystemExit(main())
