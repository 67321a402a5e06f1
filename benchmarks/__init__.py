"""Side-by-side benchmarks: keeptime's ``engine`` against the reference ``dbos`` package.

Run ``python -m benchmarks --help``; see benchmarks/README.md.
"""
