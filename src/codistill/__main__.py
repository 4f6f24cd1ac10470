"""``python -m codistill VERB ...``: the ``codistill`` command."""

import sys

from codistill.cli import main

sys.exit(main())
