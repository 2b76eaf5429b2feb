"""Bridges: glue between a client API and a backend API of another protocol.

A bridge registered at `Gateway.bridges[(client_api, backend_api)]` turns a parsed client request
into the backend's format, sends it through the provider, and turns the reply (JSON or stream) back.
"""
