"""Install the LiteLLM proxy (pinned) into its own venv for `make bench-compare`.

Usage: <venv>/bin/python bench/install_litellm.py

Tries `pip install litellm[proxy]==VERSION` first. If that fails only because a dependency's lower
bound is newer than anything the package index serves (litellm 1.106.10 asks for a certifi released
after the newest one mirrored here), it installs litellm with --no-deps and then its core and
`proxy` requirements itself, relaxing just the unsatisfiable lower bounds, and says so.
"""

from __future__ import annotations

import subprocess
import sys

VERSION = "1.106.10"
EXTRA = "proxy"
RELAX = {"certifi"}  # lower bounds relaxed when the index has no release that new


def pip(*args: str) -> int:
    return subprocess.call([sys.executable, "-m", "pip", "install", "-q", *args])


def requirements() -> list[str]:
    from importlib.metadata import requires

    from packaging.requirements import Requirement

    out = []
    for line in requires("litellm") or []:
        req = Requirement(line)
        if req.marker is not None and not req.marker.evaluate({"extra": EXTRA}):
            continue
        req.marker = None
        out.append(req.name if req.name in RELAX else str(req))
    return out


def main() -> int:
    if pip(f"litellm[{EXTRA}]=={VERSION}") == 0:
        return 0
    print(
        f"install_litellm: litellm[{EXTRA}]=={VERSION} does not resolve against this index; "
        f"installing it with --no-deps and relaxing {sorted(RELAX)}",
        file=sys.stderr,
    )
    if pip("packaging") != 0 or pip("--no-deps", f"litellm=={VERSION}") != 0:
        return 1
    return pip(*requirements())


if __name__ == "__main__":
    sys.exit(main())
