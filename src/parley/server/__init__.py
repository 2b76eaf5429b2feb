"""The HTTP server: Starlette routes around the Gateway object."""
