"""``python -m atriumseg`` runs the command line."""

import sys

from atriumseg.cli import main

sys.exit(main())
