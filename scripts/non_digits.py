"""Non-digit pictures shown to a softmax and a sigmoid model: writes docs/results/non_digits.json and .md.

    python scripts/non_digits.py SOFTMAX_CHECKPOINT SIGMOID_CHECKPOINT [--data-dir DIR] [--out docs/results]

The two checkpoints should come from the same recipe, e.g. `python scripts/train.py` and
`python scripts/train.py loss=sigmoid`.
"""

import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("softmax_checkpoint")
    parser.add_argument("sigmoid_checkpoint")
    parser.add_argument("--data-dir", default=os.environ.get("DIGITS_DATA_DIR", str(ROOT.parent / "shared" / "data")))
    parser.add_argument("--out", default=str(ROOT / "docs" / "results"))
    args = parser.parse_args()

    import torch

    from digits.console import quiet_console
    from digits.data import load_mnist
    from digits.errors import DigitsError
    from digits.evaluation.loading import load_module, resolve_checkpoint
    from digits.report import markdown_table, provenance, write_json
    from digits.studies.non_digits import KINDS, make_pictures, study

    quiet_console()
    try:
        images, labels = load_mnist(args.data_dir, train=False, download=False)
        pictures, kinds = make_pictures(images)
        models = {
            name: study(load_module(resolve_checkpoint(path), torch.device("cpu")), pictures, kinds, images, labels)
            for name, path in [("softmax", args.softmax_checkpoint), ("sigmoid", args.sigmoid_checkpoint)]
        }
    except DigitsError as error:
        print(error, file=sys.stderr)
        return 2
    checkpoints = {"softmax": args.softmax_checkpoint, "sigmoid": args.sigmoid_checkpoint}
    data = {**provenance(), "torch": torch.__version__, "checkpoints": checkpoints, "models": models}
    rows = [
        {
            "model": name,
            "threshold": m["threshold"],
            "non-digits declined": f"{m['non-digits']['declined']:.1%}",
            "non-digits labelled a digit with > 90 %": f"{m['non-digits']['labelled a digit with > 90 %']:.1%}",
            "test accuracy": f"{m['test accuracy']:.2%}",
            "test digits declined": f"{m['test digits declined']:.2%}",
        }
        for name, m in models.items()
    ]
    per_kind = [
        {
            "kind": kind,
            "pictures": models["softmax"]["per kind"][kind]["pictures"],
            **{
                f"{name} {what}": f"{models[name]['per kind'][kind][what]:.0%}"
                for name in models
                for what in ("declined", "labelled a digit with > 90 %")
            },
        }
        for kind in KINDS
    ]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "non_digits.json", data)
    (out / "non_digits.md").write_text(
        f"Measured {data['date']} on {data['machine']}, commit {data['commit']}, torch {data['torch']}; "
        f"{len(kinds)} non-digit pictures.\n\n" + markdown_table(rows) + "\n" + markdown_table(per_kind)
    )
    print(f"wrote {out / 'non_digits.json'} and {out / 'non_digits.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
