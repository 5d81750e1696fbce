"""Take the web app's screenshots in docs/screenshots/ (referenced from docs/ui.md).

Runs the browser tests (tests/e2e/test_ui.py: a real server, headless Chromium) with
GENEXFER_SCREENSHOTS pointing here, so each page is saved as <page>.png while it is exercised.
Needs Debian's chromium and chromium-driver (bash .ci/services.sh). From the repository root:

    python docs/screenshots/take.py
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]

if __name__ == "__main__":
    env = {**os.environ, "GENEXFER_SCREENSHOTS": str(HERE), "PYTHONPATH": str(ROOT)}
    test = ROOT / "tests" / "e2e" / "test_ui.py"
    sys.exit(subprocess.call([sys.executable, "-m", "pytest", "-q", str(test)], cwd=ROOT, env=env))
