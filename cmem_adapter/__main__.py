"""``python -m cmem_adapter``: the ``cmem-adapter`` command line."""

import sys

from .cli import main

sys.exit(main())
