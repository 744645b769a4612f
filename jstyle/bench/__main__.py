"""``python -m jstyle.bench``: see :mod:`jstyle.bench.harness`."""

import sys

from jstyle.bench.harness import main

sys.exit(main())
