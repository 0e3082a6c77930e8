"""``python -m runtime.cli``: the ``vlart`` command without the console script (the eval runner starts its server
this way)."""

import sys

from runtime.cli import main

sys.exit(main())
