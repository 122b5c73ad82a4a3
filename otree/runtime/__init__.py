"""The only code that forks, execs, waits and signals: it carries out the engine's actions."""
