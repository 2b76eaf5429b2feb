"""Routing: which deployments serve a requested model name, and how a request is sent.

Modules: `table` (name -> deployments), `run` (the Router every route calls).
"""
