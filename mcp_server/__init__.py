"""callbridge's MCP server: calls and conversations for AI assistants, over stdio and HTTP.

:mod:`mcp_server.server` builds the server (tools in :mod:`mcp_server.tools`, resources and the
prompt in :mod:`mcp_server.resources`, result types in :mod:`mcp_server.schemas`) over a data source
from :mod:`mcp_server.data`; :mod:`mcp_server.stdio` is ``callbridge mcp`` and :mod:`mcp_server.http`
mounts it at ``/mcp`` in ``callbridge serve``.
"""
