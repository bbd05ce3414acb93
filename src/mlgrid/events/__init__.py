"""The event layer: envelopes, publish validation, conversion and the ML event builders.

Pure logic with no IO; nothing here imports from ``api/``, ``store/`` or ``broker/``.

* :mod:`.jsoncodec` - exact JSON (numbers as ``Decimal``) in, compact orjson out;
* :mod:`.schemas` - schema names and the custom ``inputSchemaMapping``;
* :mod:`.publish` - a publish request to validated, storable events (all or nothing);
* :mod:`.convert` - Event Grid -> CloudEvents and schema-agnostic accessors;
* :mod:`.ml` - the five Azure Machine Learning lifecycle events;
* :mod:`.timestamps` - RFC 3339 parsing and formatting.
"""
