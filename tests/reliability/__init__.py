"""The reliability suite (a package: its helper modules are imported relatively)."""
