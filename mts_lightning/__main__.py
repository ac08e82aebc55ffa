"""``python -m mts_lightning``: the ``mts-lightning`` command line."""

from mts_lightning.commands import main

if __name__ == "__main__":
    main()
