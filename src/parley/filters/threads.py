"""Server-held threads (`thread: {type: create | continue}`) for backends that hold none.

Anthropic holds threads itself: when every deployment that may serve a request is an Anthropic
one, `thread` is forwarded. Otherwise parley holds the thread in its database: a `create` is sent
as it is, without `thread`; a `continue` gets the stored system prompt, tools and history put in
front of its new messages, so the backend sees the whole conversation. When the reply is complete
(and not a refusal) the history up to it is saved under the reply's `id`, off the request path.
Thread turns are neither answered from nor stored in the response cache.
Without a database this filter is absent and the translators answer `thread_unsupported_request`,
from which the anthropic SDK recovers by sending the whole conversation itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from parley.core.context import RequestContext, StateKey
from parley.core.errors import invalid_request, thread_error
from parley.core.stream import UpstreamReply
from parley.core.tasks import Tasks
from parley.filters.cache.accumulate import MessageAccumulator, json_message
from parley.pipeline.filter import Filter, Phase, StreamEvent
from parley.store.records import KeyRecord
from parley.store.threads import ThreadClaim, ThreadState, ThreadStore

_MESSAGES = {
    "thread_not_found": (404, "thread: no stored thread for this previous_message_id"),
    "thread_already_continued": (
        400,
        "thread: this response was already continued; continue from the thread's most recent response",
    ),
    "thread_continue_in_flight": (400, "thread: another request is continuing from this response"),
}


@dataclass(slots=True)
class Turn:
    """One thread turn in flight: what it sent in full, the reply it continues, the reply it got."""

    state: ThreadState
    parent: str | None
    accumulator: MessageAccumulator | None = None
    reply: dict[str, Any] | None = None


TURN: StateKey[Turn] = StateKey("threads.turn")


def owner_of(ctx: RequestContext) -> str | None:
    """Who may continue a thread: the key that created it (its hash), the master key, or anyone
    on a gateway without keys."""
    if isinstance(ctx.auth, KeyRecord):
        return ctx.auth.token
    return "master" if ctx.auth == "master" else None


class ThreadHolder(Filter):
    phase = Phase.AUTH  # after the key is known, before limits, budgets and the cache see the body

    def __init__(self, store: ThreadStore, tasks: Tasks) -> None:
        self.store = store
        self.tasks = tasks

    async def on_request(self, ctx: RequestContext, body: dict[str, Any] | None) -> UpstreamReply | None:
        if body is None or "thread" not in body or ctx.route != "/v1/messages":
            return None
        thread = body["thread"]
        if ctx.targets and all(t.deployment.api == "anthropic" for t in ctx.targets):
            return None  # Anthropic holds its own threads
        del body["thread"]
        ctx.body_changed = True
        if thread is None:
            return None
        # A thread turn's reply must be new: its id names the thread's state from here on.
        given = ctx.cache_controls if isinstance(ctx.cache_controls, dict) else {}
        ctx.cache_controls = {**given, "no-cache": True, "no-store": True}
        kind = thread.get("type") if isinstance(thread, dict) else None
        if kind == "create":
            ctx.state.put(TURN, Turn(_state_of(body), None))
        elif kind == "continue":
            parent = thread.get("previous_message_id")
            if not isinstance(parent, str) or not parent:
                raise invalid_request("thread.previous_message_id: Field required", param="thread")
            await self._continue(ctx, body, parent)
        else:
            raise invalid_request("thread.type: Input should be 'create' or 'continue'", param="thread")
        return None

    async def _continue(self, ctx: RequestContext, body: dict[str, Any], parent: str) -> None:
        try:
            held = await self.store.claim(parent, owner_of(ctx), ctx.request_id)
        except ThreadClaim as e:
            status, message = _MESSAGES[e.code]
            raise thread_error(status, e.code, message) from None
        changed = [f for f in ("system", "tools") if f in body and body[f] != getattr(held, f)]
        if changed:
            await self.store.release(parent, ctx.request_id)  # the reply stays continuable
            raise thread_error(
                400,
                "thread_fingerprint_mismatch",
                f"thread: {' and '.join(changed)} differ from the thread's; a thread keeps the ones it "
                "was created with",
            )
        for name in ("system", "tools"):
            if getattr(held, name) is not None:
                body[name] = getattr(held, name)
        body["messages"] = [*held.messages, *body["messages"]]
        ctx.state.put(TURN, Turn(_state_of(body), parent))

    async def on_response(self, ctx: RequestContext, reply: UpstreamReply) -> None:
        turn = ctx.state.get(TURN)
        if turn is not None and reply.status == 200:
            turn.reply = json_message(reply.body)

    def wants_events(self, ctx: RequestContext) -> bool:
        turn = ctx.state.get(TURN)
        if turn is None:
            return False
        turn.accumulator = MessageAccumulator()
        return True

    def on_event(self, ctx: RequestContext, event: StreamEvent) -> list[StreamEvent]:
        turn = ctx.state.get(TURN)
        if turn is not None and turn.accumulator is not None:
            turn.accumulator.feed_event(event.name, event.data)
            if turn.accumulator.complete and not turn.accumulator.failed:
                turn.reply = turn.accumulator.message
        return [event]

    def on_done(self, ctx: RequestContext) -> None:
        turn = ctx.state.pop(TURN)
        if turn is None:
            return
        reply = turn.reply
        saved = (
            ctx.status == 200
            and reply is not None
            and isinstance(reply.get("id"), str)
            and reply.get("stop_reason") not in (None, "refusal")
        )
        if saved and reply is not None:
            history = [*turn.state.messages, {"role": "assistant", "content": reply.get("content") or []}]
            state = ThreadState(turn.state.system, turn.state.tools, history)
            self.store.save_soon(self.tasks.spawn, reply["id"], owner_of(ctx), ctx.model, state, turn.parent)
        elif turn.parent is not None:
            self.tasks.spawn(self.store.release(turn.parent, ctx.request_id))


def _state_of(body: dict[str, Any]) -> ThreadState:
    messages = body.get("messages")
    return ThreadState(
        body.get("system"), body.get("tools"), list(messages) if isinstance(messages, list) else []
    )
