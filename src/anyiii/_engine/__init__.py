"""The embedded engine: the router (sans-IO), built-ins, providers, and the servers."""
