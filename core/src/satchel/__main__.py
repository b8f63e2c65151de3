"""``python -m satchel`` runs the ``satchel`` command."""

import sys

from satchel.cli import main

sys.exit(main())
