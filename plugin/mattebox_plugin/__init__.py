"""mattebox plug-in side: the wire protocol and the client, importable inside any host's Python.

Needs pyzmq and msgpack only; numpy is optional (used when arrays are passed in or asked for).
"""
__version__ = "0.1.0"
