"""The quorum sync sensor (see quorum.py) and the branch-state reading it shares with its trigger."""
