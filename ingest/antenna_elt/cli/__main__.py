"""``python -m antenna_elt.cli``: the ``antenna-elt`` command."""

import sys

from antenna_elt.cli import main

sys.exit(main())
