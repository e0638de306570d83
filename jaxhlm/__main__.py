"""``python -m jaxhlm``: the ``jaxhlm`` command line (see :mod:`jaxhlm.cli`)."""
import sys

from .cli import main

sys.exit(main())
