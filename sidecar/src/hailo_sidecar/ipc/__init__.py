"""The co-located low-latency door: a Unix-domain socket with binary frames.

framing.py   the wire format (header, message types, error codes) and the decoder
listen.py    the socket file: private directory, mode 0660, stale sockets
shm.py       shared-memory input: read-only mappings of the client's segments
server.py    the asyncio server, on the HTTP server's loop, calling the same Service
"""
