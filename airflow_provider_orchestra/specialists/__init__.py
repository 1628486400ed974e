"""The specialists: the data work of each workflow branch, as small LangGraph subgraphs
over Arrow record batches (see :mod:`.base`). ``io`` holds their sources and sinks.

Import the modules directly (``specialists.templates``, ``specialists.checkpoint``...):
this package imports nothing on its own, so importing ``specialists.io`` stays light.
"""
