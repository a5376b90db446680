"""`python -m app`: the one command-line interface."""

import sys

from app.cli import main

sys.exit(main())
