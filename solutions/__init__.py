"""Reference solutions of the exercises: ``labkit grade --solutions`` passes every check.

Read one after you have a version of your own that passes (or after you are truly stuck): the
point of an exercise is the mistakes you make on the way.
"""
