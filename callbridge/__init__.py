"""callbridge: phone calls bridged to a realtime voice model, every event recorded and replayable.

The one installed import package. Its subpackages live in the repository's top-level folders and
are published under this name by ``pyproject.toml``'s ``package-dir`` mapping:

- ``callbridge.adapters``    (``adapters/``)    sans-IO wire codecs, sockets, simulated peers
- ``callbridge.engine``      (``engine/``)      what a call is: events, the call core, the store
- ``callbridge.projections`` (``projections/``) the read side, folded from the log
- ``callbridge.web``         (``web/``)         the listener, media path, console and API
- ``callbridge.mcp_server``  (``mcp_server/``)  the MCP server

The symbolic links beside this file mirror that mapping inside the source tree, so tools that read
the tree (mypy, import-linter, ``python`` started in the repository) see the installed names too.
"""
