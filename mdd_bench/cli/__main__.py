"""`python -m mdd_bench.cli`: the same command as `mdd-bench`."""

import sys

from mdd_bench.cli import main

sys.exit(main())
