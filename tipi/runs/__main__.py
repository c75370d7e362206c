"""``python -m tipi.runs``: the runs browser."""

import sys

from tipi.runs.cli import main

sys.exit(main())
