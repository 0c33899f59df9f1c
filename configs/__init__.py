"""The configs, shipped inside the package as ``digits.configs`` (pyproject.toml maps this folder there), so
that an installed digits finds them without a checkout: the commands compose them, the checkpoint gate reads
which classes they offer, and other Hydra apps (the lab) add them with ``pkg://digits.configs``."""

from pathlib import Path

CONFIG_DIR = Path(__file__).resolve().parent  # configs/ in a checkout, site-packages/digits/configs/ installed
