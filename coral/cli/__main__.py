"""``python -m coral.cli``: the ``coral`` command."""

import sys

from coral.cli import main

sys.exit(main())
