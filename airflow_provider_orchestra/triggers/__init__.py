"""The quorum sensor's trigger (see quorum.py)."""
