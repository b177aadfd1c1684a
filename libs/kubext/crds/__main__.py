"""``python -m kubext.crds write|check DIR``: regenerate or verify the committed CRD manifests."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from kubext.crds import manifests


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kubext.crds", description=__doc__)
    parser.add_argument("action", choices=["write", "check"])
    parser.add_argument("directory", type=Path)
    args = parser.parse_args(argv)
    if args.action == "write":
        for path in manifests.write(args.directory):
            print(path)
        return 0
    stale = manifests.drift(args.directory)
    for name in stale:
        print(
            f"{args.directory / name}: differs from the models; run `python -m kubext.crds write`"
        )
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
