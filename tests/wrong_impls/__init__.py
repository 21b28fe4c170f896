"""Realistic wrong implementations of the exercises: each must fail at least one public check.

One module per mistake, named ``<exercise>__<mistake>.py``. Each declares ``EXERCISE`` (which
exercise it implements), ``MISTAKE`` (what it gets wrong, in words) and ``CAUGHT_BY`` (checks
that must fail for it). ``tests/test_grading.py`` grades every one of them.
"""
