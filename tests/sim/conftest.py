import hypothesis  # noqa: F401  (imported before the gateware tests: CPython 3.11 ast bug)
