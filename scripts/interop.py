"""The same cross-entropy in TensorFlow, Keras and JAX: run every case, write docs/results/interop.json and .md.

    python scripts/interop.py CHECKPOINT [--data-dir DIR] [--out docs/results]

CHECKPOINT: a trained run's checkpoint (its logits for the 10,000 test images are one of the inputs).
Needs the interop extra: pip install -e '.[interop]'.
"""

import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint")
    parser.add_argument("--data-dir", default=os.environ.get("DIGITS_DATA_DIR", str(ROOT.parent / "shared" / "data")))
    parser.add_argument("--out", default=str(ROOT / "docs" / "results"))
    args = parser.parse_args()

    from digits.console import quiet_console
    from digits.errors import DigitsError
    from digits.report import provenance, write_json

    quiet_console()
    try:
        from digits.studies import interop
    except ImportError as error:
        print(f"the interop extra is not installed ({error}): pip install -e '.[interop]'", file=sys.stderr)
        return 2
    try:
        logits, labels = interop.test_set_logits(args.checkpoint, args.data_dir)
    except DigitsError as error:
        print(error, file=sys.stderr)
        return 2
    data = {**provenance(), "checkpoint": args.checkpoint, **interop.report(logits, labels)}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "interop.json", data)
    head = f"Measured {data['date']} on {data['machine']}, commit {data['commit']}; " + ", ".join(
        f"{name} {version}" for name, version in data["versions"].items()
    )
    (out / "interop.md").write_text(head + ".\n\n" + interop.markdown(data))
    print(f"wrote {out / 'interop.json'} and {out / 'interop.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
