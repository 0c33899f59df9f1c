"""The logit lab page (``scripts/demo.py``): the web app (``app``) and the numbers it shows (``lesson``); the
page itself is ``static/``."""
