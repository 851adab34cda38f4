"""The benchmark's own tools, tested against real servers on loopback.

The tools live in ``scripts/`` (they are run as scripts, not shipped with the
package); this tier imports them from there.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
