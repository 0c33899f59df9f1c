"""The lab's tests use the product's fixtures and hooks (tests/harness.py, on the path through pyproject's
``pythonpath``): one copy of each."""

pytest_plugins = ["harness"]
