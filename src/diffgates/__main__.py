"""``python -m diffgates ...`` runs the command line (see ``diffgates.cli``)."""
import sys

from .cli import main

sys.exit(main())
