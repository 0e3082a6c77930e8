"""``python -m runtime.app.cli``: the ``vlart`` command without the console script (the eval runner starts its server
this way)."""

import sys

from runtime.app.cli import main

sys.exit(main())
