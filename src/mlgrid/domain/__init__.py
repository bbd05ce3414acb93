"""What several layers share: value types and the names of things, and nothing else.

Every module here imports the standard library only - never anything of mlgrid - so any layer
may import it without creating a cycle. A name that two layers must spell the same way (a
schema name, an endpoint type, a delivery state, an error code) is defined here once, as a
``StrEnum`` member: it compares, hashes, formats and serialises exactly as its string, so
stored rows, JSON bodies and messages are unchanged by using it.

``tests/unit/test_import_direction.py`` fails when a module here imports mlgrid.
"""
