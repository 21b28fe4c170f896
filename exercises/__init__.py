"""The exercises: implement each module's ``NotImplementedError`` bodies, then grade them.

``labkit grade`` (or ``labkit grade ex05``) runs the public checks; ``labkit serve --impl
exercises`` and ``Cluster(impl="exercises")`` run your code inside the live system. See
``exercises/README.md``.
"""
