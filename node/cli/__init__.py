"""The ``meshdex`` command line: a thin click layer over the library.

Each command family lives in its own module and registers on the group in ``main``.
"""
