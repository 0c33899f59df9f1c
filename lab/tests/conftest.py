"""The lab's tests use the product's fixtures and hooks (tests/fixtures.py, on the path through pyproject's
``pythonpath``): one copy of each."""

pytest_plugins = ["fixtures"]
