"""The `otree` command: the parser, `run` and `check`, the control commands, all CLI text."""
