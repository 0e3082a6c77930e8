"""runtime/ holds the bottom layer (timing, budgets, config I/O) and the top one (profile, the CLI): importing the
bottom, in a fresh interpreter, must not pull in the top or policies (shared/design.md). The static check of every
import, cycles included, is tests/test_import_layers.py."""

import subprocess
import sys

from tests.conftest import REPO

BOTTOM = ("runtime", "runtime.core.timing", "runtime.core.budgets", "runtime.core.yaml_config", "runtime.core.resources")


def test_the_bottom_layer_imports_nothing_above_it():
    code = (f"import sys\nimport {', '.join(BOTTOM)}\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in {'policies', 'envs', 'bridge', 'torch'} "
            "or m in {'runtime.robot.control_loop', 'runtime.app.profile', 'runtime.app.cli'}))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
