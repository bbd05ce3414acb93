"""The scoring process of a Local endpoint and the server's handle on it.

``server`` (run as ``python -m mlgrid.workspace.scoring.server``), ``loaders`` and ``inputs``
run inside the scoring process and import nothing of the mlgrid server; ``process`` runs in
the server and starts, watches and stops that process.
"""
