"""`python -m emogan ...` (and `torchrun ... -m emogan train ...`): the same as the `emogan` console script."""
from emogan.cli import main

if __name__ == "__main__":
    main()
