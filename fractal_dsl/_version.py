"""The package's version, in a module of its own so that every stage can read it without
importing the package's ``__init__`` (the public API, which sits above every stage)."""

__version__ = "0.1.0"
