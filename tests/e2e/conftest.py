import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from lab.pytest_fixture import lab, pytest_terminal_summary  # noqa: E402, F401
