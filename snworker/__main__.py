"""python -m snworker: the same as the snworker command."""

from snworker.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
