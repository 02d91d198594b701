"""Notebook tooling of the homework: headless runner, static checker, question parser.

Kept apart from ``hw4/`` (the homework's own code answers and the helpers behind
the notebooks' evidence cells): ``main.py`` and the tests import the tooling from here.
"""
