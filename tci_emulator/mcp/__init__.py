"""The MCP face: session tools for agents, over stdio (``tci-emulator mcp``) or mounted at
``/mcp`` on a running emulator. Every tool call is an ordinary API request with the caller's
own key (:mod:`tci_emulator.api_client`), so the ledger, budgets, faults and the journal see it.

- :mod:`.server`: the tools and their answers;
- :mod:`.mount`: the streamable-HTTP endpoint inside the emulator's app;
- :mod:`.command`: the ``tci-emulator mcp`` command.
"""
