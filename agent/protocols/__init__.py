"""Application-protocol parsers, one module per protocol.

Each protocol module holds its parser and its handler (the interface is agent/protocols/handler.py); which
handler a flow's bytes go to is decided by the registry, agent/protocols/registry.py. The session that the
flow table drives is agent/protocols/session.py.
"""
