"""Tree sources -> specs: TOML files (file, line and key path in every error) and Python trees.

Loading starts nothing.
"""
