"""``python -m meshdex``: the same entry point as the ``meshdex`` console script."""

from meshdex.node.cli.main import main

if __name__ == "__main__":
    main()
