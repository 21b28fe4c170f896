"""``python -m labkit.sim``: the simulator's command line (:mod:`labkit.lab.sim.__main__`)."""

import sys

from labkit.lab.sim.__main__ import main

sys.exit(main())
