"""Routing: which deployments serve a requested model name, and how a request is sent.

Modules: `table` (name -> deployments), `run` (the Router every route calls: retries, fallbacks),
`settings` (router_settings), `health` (load, latency, cooldowns; shared via Redis), `strategy`
(strategies, session affinity), `outcome` (failure classes, retry-after, stream peeking),
(the after-call settlement lives in `parley.filters.router_accounting`).
"""
