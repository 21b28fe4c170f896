"""``python -m labkit.grading [EXERCISE] [--solutions] [--seed N]``: same as ``labkit grade``."""

import sys

from labkit.grading.runner import main

sys.exit(main())
