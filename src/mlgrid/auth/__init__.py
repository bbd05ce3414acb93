"""Authentication and authorization, without IO frameworks or storage.

* ``tokens`` — principal bearer tokens (generated, hashed for storage, compared) and topic keys;
* ``secretbox`` — authenticated encryption of small secrets at rest, and the key file;
* ``sas`` — Event Grid shared access signatures, generated and verified as Azure does;
* ``credentials`` — which credential a publish or pull request carries;
* ``roles`` — the role model of SPEC §1 and the ``authorize`` check.

Nothing here imports ``api/``, ``store/`` or ``broker/``: callers pass values in (stored hashes,
keys, role assignments, the current time) and get values or ``mlgrid.errors`` exceptions back.
"""
