"""The sans-IO core of the iii protocol: frames, codec and connection state machines.

Nothing in this package does I/O or imports an async or network library (a test enforces
it). Everything here is private to anyiii; the runtime and the embedded engine build on it.
"""
