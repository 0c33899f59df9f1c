"""The logit lab page (``scripts/demo.py``): the web app (``app``), the numbers it shows (``lesson``) and
the headless Chromium its tests and benchmark drive (``browser``); the page itself is ``static/``."""
