"""`python -m mbdef ...` == `mbdef ...`."""

from mbdef.cli import main

if __name__ == "__main__":
    main()
