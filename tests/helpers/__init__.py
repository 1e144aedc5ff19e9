"""Plain helper functions shared by test modules (fixtures live in ``tests/conftest.py``).

Imported as ``from helpers.calibrate import ...``: ``tests/`` is on ``sys.path`` through
``pythonpath = ["tests"]`` in ``pyproject.toml`` (and pytest's rootdir handling), so no test
edits ``sys.path``.
"""
