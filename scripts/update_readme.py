"""Copy the scripts' newest result tables into the README, between its markers.

    python scripts/update_readme.py                  # the newest run of each script under outputs/
    python scripts/update_readme.py --check          # exit 1 if the README differs from those runs

A block ``<!-- begin: compare_losses/whole_trainings -->`` ... ``<!-- end -->`` takes
``outputs/compare_losses/<newest run>/tables/whole_trainings.md`` (digits.studies.readme_tables).
"""

import argparse
import sys
from pathlib import Path

from digits.studies.readme_tables import newest_table, readme_blocks, refresh

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--readme", type=Path, default=ROOT / "README.md")
    parser.add_argument("--outputs", type=Path, default=Path("outputs"), help="where the scripts' run folders are")
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if a table is out of date")
    args = parser.parse_args()

    readme = args.readme.read_text()
    tables = {}
    for key in readme_blocks(readme):
        path = newest_table(args.outputs, key)
        if path is None:
            print(f"{key}: no run has written it yet (python scripts/{key.split('/')[0]}.py), left as it is")
        else:
            tables[key] = path.read_text()
            print(f"{key}: {path}")
    updated = refresh(readme, tables)
    if updated == readme:
        print("README.md is up to date")
        return 0
    if args.check:
        print("README.md differs from the newest runs: python scripts/update_readme.py", file=sys.stderr)
        return 1
    args.readme.write_text(updated)
    print(f"updated {args.readme}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
