"""Deprecated name, kept for one release: ``python -m digits.search <sweep folder>`` is now
``python -m digits.studies.search <sweep folder>`` (the studies moved to their own subpackage)."""

import sys

from digits.studies.search import main

if __name__ == "__main__":
    print("digits.search is deprecated and will be removed: use python -m digits.studies.search", file=sys.stderr)
    sys.exit(main(sys.argv[1:]))
