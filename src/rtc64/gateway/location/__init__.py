"""The location service (RFC 3261 §10.3): registrar, bindings, digest users, the store
protocol (``store``), its backends (``sqlite``, ``redis``) and backend choice (``backends``).

Import the modules directly; this package re-exports nothing, so loading one module never
pulls in a backend."""
