"""A module that raises when imported (for the worker's --import test)."""

raise RuntimeError("this module is broken on purpose")
