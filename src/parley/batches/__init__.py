"""Message Batches run by the gateway: `/v1/messages/batches` for every backend.

`store` keeps batches and items in the database (claims are leases: `FOR UPDATE SKIP LOCKED` on
Postgres); `runner` works them through the same pipeline as `/v1/messages`, one item at a time per
slot, under a `gate` that leaves each deployment's capacity to interactive calls first; `wire`
checks create bodies and shapes the Anthropic objects; `service` is what the routes call.
"""
