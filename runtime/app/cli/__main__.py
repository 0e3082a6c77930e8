"""``python -m runtime.app.cli``: the ``vlart`` command without the console script (the benchmarks start it this
way, with the interpreter they run in)."""

import sys

from runtime.app.cli import main

sys.exit(main())
