"""The product's tests load the shared fixtures and hooks from tests/harness.py (the lab's tests load the
same module: lab/tests/conftest.py)."""

pytest_plugins = ["harness"]
