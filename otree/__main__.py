"""``python -m otree``: the same as the ``otree`` command."""

from otree.cli.main import main

if __name__ == "__main__":
    main()
