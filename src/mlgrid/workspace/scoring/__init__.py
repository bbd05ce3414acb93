"""The scoring process of a Local endpoint and the server's side of it.

``server`` (run as ``python -m mlgrid.workspace.scoring.server``), ``loaders`` and ``inputs``
run inside the scoring process and import nothing of the mlgrid server; ``process`` (start,
watch, stop the process) and ``proxy`` (forward scoring requests to it) run in the server.
"""
