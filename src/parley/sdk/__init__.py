"""The in-process Python SDK: parley's routing and translation without running a server."""
