"""``python -m callbridge``: the same command line as the ``callbridge`` console script."""

import sys

from callbridge.cli import main

sys.exit(main(sys.argv[1:]))
