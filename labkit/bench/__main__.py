import sys

from labkit.bench.runner import main

sys.exit(main())
