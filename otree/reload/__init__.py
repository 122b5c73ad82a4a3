"""Self-reload across ``os.execv``: the handoff document and both images' halves."""
