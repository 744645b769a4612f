"""``python -m jstyle.weights``: convert VGG-19 weights (see :mod:`jstyle.weights.provision`)."""

import sys

from jstyle.weights.provision import main

sys.exit(main())
