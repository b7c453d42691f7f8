"""`python -m daemon` is the `nightshift` command."""

import sys

from .cli import main

sys.exit(main())
