"""`python -m benchmarks [--quick] [--json PATH]`.

Spawned children re-import this module under another name; the guard keeps that import light.
"""

if __name__ == "__main__":
    import sys

    from benchmarks.cli import main

    sys.exit(main())
