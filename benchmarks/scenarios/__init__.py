"""Scenario scripts. Each runs in its own process, under either implementation.

A scenario is written once against the spec's API. ``common.load_api`` picks the import line
(``from engine import ...`` or ``from dbos import ...``) from ``--impl``, so both sides run the
same code. Scenarios use only the standard library besides the API, because the reference
side runs in its own virtual environment.
"""
