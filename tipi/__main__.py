"""``python -m tipi``: the command-line entry point."""

from tipi.cli import main

if __name__ == "__main__":
    main()
