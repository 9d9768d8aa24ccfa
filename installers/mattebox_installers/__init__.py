"""Put mattebox nodes into host applications (Blender, GIMP 3, Nuke) and take them out again.

Each host module has ``install``, ``uninstall`` and ``doctor``; :mod:`.common` holds what they share: vendoring
pyzmq/msgpack wheels for the host's own Python, copying the host-neutral client package, writing the client
config and checking the server with a handshake.
"""
