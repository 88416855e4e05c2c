"""`python -m mbdef ...` == `mbdef ...`; the Hydra task stays in mbdef.run, so parallel launchers can pickle it."""

from mbdef.run import main

if __name__ == "__main__":
    main()
