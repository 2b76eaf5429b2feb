"""The guardrail filters: `Guardrails` (phase GUARDRAILS) on the request and the reply's policy,
`PiiRestore` (phase RESTORE, after the cache) putting masked values back into the reply.

Which guardrails run: those with `default_on`, the key's and its team's (`guardrails` through the
admin API), and those a request names (`guardrails` at the top level, in `metadata` or in
`litellm_metadata`; removed before sending). A guardrail that fails fails the request with a 500
naming it, unless it has `fail_open: true`.
"""

from __future__ import annotations

import copy
import logging
import re
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson

from parley.config.guardrails import GuardrailSpec
from parley.core.context import GuardrailAction, RequestContext, StateKey
from parley.core.errors import GatewayError, invalid_request
from parley.core.stream import UpstreamReply
from parley.filters.guardrails import injection
from parley.filters.guardrails.content import CONTEXT, ContentBlocked, ContentPolicy
from parley.filters.guardrails.llm_check import LlmCheck
from parley.filters.guardrails.mask import PLACEHOLDER, PiiMasker, Vault
from parley.filters.guardrails.output import Gates, OutputPiiGate, mask_output
from parley.filters.guardrails.pii import Analyzer, PiiAnalyzer
from parley.filters.guardrails.stream import Channel, Gate, StreamEditor
from parley.filters.guardrails.walk import latest_turn, reply_texts, request_texts
from parley.pipeline.filter import Filter, Phase, StreamEvent
from parley.store.records import KeyRecord
from parley.translate.chat_errors import openai_stream_error

log = logging.getLogger("parley.guardrails")

HEADER = "x-parley-guardrails"
ROUTES = frozenset(
    {
        "/v1/messages",
        "/v1/messages/count_tokens",
        "/v1/chat/completions",
        "sdk:/v1/messages",
        "sdk:/v1/chat/completions",
        "/anthropic/v1/messages",
        "/anthropic/v1/messages/count_tokens",
        "/anthropic/v1/messages/batches",
    }
)
_ORDER = {"injection": 0, "content": 1, "pii": 2}  # screen the original text, then mask it
_PARTIAL = re.compile(r"<[A-Z][A-Z0-9_]*\d*|<")


@dataclass(slots=True)
class _Run:
    """One request's guardrails: what ran, what they found, the placeholders to restore."""

    active: list[GuardrailSpec]
    vault: Vault = field(default_factory=Vault)
    tallies: dict[str, Counter[str]] = field(default_factory=dict)
    results: dict[str, str] = field(default_factory=dict)
    output: list[ContentPolicy] = field(default_factory=list)
    output_pii: list[PiiMasker] = field(default_factory=list)  # post_call PII guardrails
    restore: bool = False
    content_stream: StreamEditor | None = None
    restore_stream: StreamEditor | None = None
    blocked: bool = False

    def tally(self, name: str) -> Counter[str]:
        return self.tallies.setdefault(name, Counter())


_RUN: StateKey[_Run] = StateKey("guardrails.run")


class Guardrails(Filter):
    phase = Phase.GUARDRAILS

    def __init__(self, specs: Iterable[GuardrailSpec], llm_check: LlmCheck | None = None) -> None:
        self.specs = {s.name: s for s in specs}
        self.llm_check = llm_check
        self.default_on = [s for s in self.specs.values() if s.default_on]
        self.maskers = {
            s.name: PiiMasker(s.name, _analyzer(s), dict(s.entities))
            for s in self.specs.values()
            if s.kind == "pii"
        }
        self.policies = {s.name: ContentPolicy(s) for s in self.specs.values() if s.kind == "content"}

    def listing(self) -> list[dict[str, Any]]:
        return [s.public() for s in self.specs.values()]

    # request

    async def on_request(self, ctx: RequestContext, body: dict[str, Any] | None) -> UpstreamReply | None:
        if body is None or ctx.route not in ROUTES:
            return None
        active = self._active(ctx, body)
        if not active:
            return None
        run = _Run(sorted(active, key=lambda s: _ORDER[s.kind]))
        ctx.state.put(_RUN, run)
        try:
            for spec in run.active:
                if spec.on_input or spec.logging_only:
                    self._guarded(ctx, run, spec, lambda s=spec: self._input(ctx, run, s, body))
            for spec in run.active:
                if spec.llm_check_model and self.llm_check is not None and not run.tallies.get(spec.name):
                    await self._llm_screen(ctx, run, spec, body)
        except GatewayError as error:
            error.headers[HEADER] = _summary(ctx, run)
            raise
        run.output = [self.policies[s.name] for s in run.active if s.kind == "content" and s.on_output]
        run.output_pii = [self.maskers[s.name] for s in run.active if s.kind == "pii" and s.on_output]
        run.restore = any(s.kind == "pii" and s.output_parse_pii for s in run.active) and bool(
            run.vault.originals
        )
        _summary(ctx, run)
        return None

    def _active(self, ctx: RequestContext, body: dict[str, Any]) -> list[GuardrailSpec]:
        """On by default, then the key's and team's, then the request's (no duplicates)."""
        active = list(self.default_on)
        for spec in [*self._attached(ctx), *self._requested(ctx, body)]:
            if spec not in active:
                active.append(spec)
        return active

    def _attached(self, ctx: RequestContext) -> list[GuardrailSpec]:
        record = ctx.auth if isinstance(ctx.auth, KeyRecord) else None
        if record is None:
            return []
        specs = []
        for name in [*record.guardrails, *(record.team.guardrails if record.team is not None else ())]:
            spec = self.specs.get(name)
            if spec is None:  # removed from the config since it was attached: refuse, not skip
                raise GatewayError(
                    500, f"guardrail {name!r} attached to key {record.label} is not configured", "api_error"
                )
            specs.append(spec)
        return specs

    def _requested(self, ctx: RequestContext, body: dict[str, Any]) -> list[GuardrailSpec]:
        """The names a request gives (removed from the body: the upstream must not see them)."""
        names: list[str] = []
        meta = ctx.litellm_metadata
        if isinstance(meta, dict) and "guardrails" in meta:
            names.extend(_names(meta["guardrails"]))
        if "guardrails" in body:
            names.extend(_names(body.pop("guardrails")))
            ctx.body_changed = True
        metadata = body.get("metadata")
        if isinstance(metadata, dict) and "guardrails" in metadata:
            names.extend(_names(metadata.pop("guardrails")))
            if not metadata:
                del body["metadata"]
            ctx.body_changed = True
        specs = []
        for name in dict.fromkeys(names):
            spec = self.specs.get(name)
            if spec is None:
                known = ", ".join(self.specs) or "none"
                raise invalid_request(f"guardrails: unknown guardrail {name!r}; configured: {known}")
            specs.append(spec)
        return specs

    async def _llm_screen(
        self, ctx: RequestContext, run: _Run, spec: GuardrailSpec, body: dict[str, Any]
    ) -> None:
        """The model's opinion on the new text (already PII-masked: the checker never sees values)."""
        assert self.llm_check is not None and spec.llm_check_model is not None
        sources = ("user", "tool") if spec.screen_tool_results else ("user",)
        text = "\n\n".join(t for source, t in latest_turn(ctx.api, body) if source in sources)
        if not text.strip():
            return
        try:
            flagged = await self.llm_check.flags(spec.llm_check_model, text)
        except GatewayError as e:
            flagged = self._failed(ctx, run, spec, RuntimeError(e.message))
        except Exception as e:
            flagged = self._failed(ctx, run, spec, e)
        if not flagged:
            return
        run.tally(spec.name)["flag:llm_check"] += 1
        if not spec.logging_only:
            run.tally(spec.name)["block:prompt_injection"] += 1
            raise GatewayError(
                400,
                f"guardrail {spec.name!r} blocked the request: prompt injection suspected (model check)",
                "invalid_request_error",
                code="guardrail_blocked",
            )

    def _failed(self, ctx: RequestContext, run: _Run, spec: GuardrailSpec, e: Exception) -> bool:
        """An engine failure: raise a 500 naming the guardrail, or (fail_open) log it and go on."""
        run.tally(spec.name)["error:" + type(e).__name__] += 1
        if spec.fail_open:
            log.warning("guardrail %s failed (fail_open): %r (request %s)", spec.name, e, ctx.request_id)
            return False
        log.error("guardrail %s failed: %r (request %s)", spec.name, e, ctx.request_id)
        raise GatewayError(
            500,
            f"guardrail {spec.name!r} failed ({type(e).__name__}); the request was not sent",
            "api_error",
            code="guardrail_error",
        ) from None

    def _guarded(self, ctx: RequestContext, run: _Run, spec: GuardrailSpec, step: Any) -> None:
        """Run one guardrail step; an unexpected failure fails the request (or is logged: fail_open)."""
        try:
            step()
        except GatewayError:
            raise
        except Exception as e:
            self._failed(ctx, run, spec, e)

    def _input(self, ctx: RequestContext, run: _Run, spec: GuardrailSpec, body: dict[str, Any]) -> None:
        tally = run.tally(spec.name)
        change = not spec.logging_only
        if spec.kind == "injection":
            self._screen(ctx, spec, body, tally, change)
            return
        target = body if change else copy.deepcopy(body)
        changed = False

        def edit(text: str, source: str, json_string: bool) -> str:
            nonlocal changed
            if spec.kind == "pii":
                new = self.maskers[spec.name].apply(text, run.vault, tally, change=change)
            else:
                new = self.policies[spec.name].check(text, tally, "request")
            changed = changed or new != text
            return new

        try:
            request_texts(ctx.api, ctx.route, target, edit)
        except ContentBlocked:
            if change:
                raise
        if changed and change:
            ctx.body_changed = True

    def _screen(
        self, ctx: RequestContext, spec: GuardrailSpec, body: dict[str, Any], tally: Counter[str], block: bool
    ) -> None:
        sources = ("user", "tool") if spec.screen_tool_results else ("user",)
        worst = injection.Verdict(0.0, ())
        for source, text in latest_turn(ctx.api, body):
            if source in sources:
                verdict = injection.score(text)
                if verdict.score > worst.score:
                    worst = verdict
        if worst.score < spec.threshold:
            return
        for rule in worst.rules:
            tally[f"flag:{rule}"] += 1
        if block:
            tally["block:prompt_injection"] += 1
            raise GatewayError(
                400,
                f"guardrail {spec.name!r} blocked the request: prompt injection suspected "
                f"(score {worst.score:g}: {', '.join(worst.rules)})",
                "invalid_request_error",
                code="guardrail_blocked",
            )

    # reply: the content policy on output

    async def on_response(self, ctx: RequestContext, reply: UpstreamReply) -> None:
        run = ctx.state.get(_RUN)
        if run is None or not (run.output or run.output_pii) or reply.status >= 400 or not reply.body:
            return
        data = _json(reply.body)
        if data is None:
            return
        changed = False

        def edit(text: str, source: str, json_string: bool) -> str:
            nonlocal changed
            for policy in run.output:
                new = policy.check(text, run.tally(policy.name), "reply")
                changed = changed or new != text
                text = new
            for masker in run.output_pii:
                new = mask_output(masker, text, run.tally(masker.name))
                changed = changed or new != text
                text = new
            return text

        try:
            reply_texts(ctx.api, data, edit)
        except ContentBlocked as error:
            run.results[error.guardrail] = "blocked"
            error.headers[HEADER] = _summary(ctx, run)
            raise
        if changed:
            reply.body = orjson.dumps(data)
        _summary(ctx, run)

    def wants_events(self, ctx: RequestContext) -> bool:
        run = ctx.state.get(_RUN)
        if run is None or not (run.output or run.output_pii):
            return False
        gates: list[Gate] = [ContentGate(run.output, run.tally)] if run.output else []
        if run.output_pii:
            gates.append(OutputPiiGate(run.output_pii, run.tally))
        run.content_stream = StreamEditor(ctx.api, gates[0] if len(gates) == 1 else Gates(gates))
        return True

    def on_event(self, ctx: RequestContext, event: StreamEvent) -> list[StreamEvent]:
        run = ctx.state.get(_RUN)
        if run is None or run.content_stream is None:
            return [event]
        if run.blocked:
            return []
        try:
            return run.content_stream.on_event(event)
        except ContentBlocked as error:
            return [_stream_error(ctx, run, error)]

    def on_stream_end(self, ctx: RequestContext) -> list[StreamEvent]:
        run = ctx.state.get(_RUN)
        if run is None or run.content_stream is None or run.blocked:
            return []
        try:
            return run.content_stream.finish()
        except ContentBlocked as error:
            return [_stream_error(ctx, run, error)]


class PiiRestore(Filter):
    """`output_parse_pii`: the reply gets the original values back; runs after the cache."""

    phase = Phase.RESTORE

    async def on_response(self, ctx: RequestContext, reply: UpstreamReply) -> None:
        run = ctx.state.get(_RUN)
        if run is None or not run.restore or reply.status >= 400 or not reply.body:
            return
        data = _json(reply.body)
        if data is not None:
            reply_texts(ctx.api, data, lambda text, source, js: run.vault.restore(text, js))
            reply.body = orjson.dumps(data)

    def wants_events(self, ctx: RequestContext) -> bool:
        run = ctx.state.get(_RUN)
        if run is None or not run.restore:
            return False
        run.restore_stream = StreamEditor(ctx.api, RestoreGate(run.vault))
        return True

    def on_event(self, ctx: RequestContext, event: StreamEvent) -> list[StreamEvent]:
        run = ctx.state.get(_RUN)
        if run is None or run.restore_stream is None:
            return [event]
        return run.restore_stream.on_event(event)

    def on_stream_end(self, ctx: RequestContext) -> list[StreamEvent]:
        run = ctx.state.get(_RUN)
        if run is None or run.restore_stream is None:
            return []
        return run.restore_stream.finish()


class RestoreGate:
    """Holds back a possible placeholder start (at most the longest placeholder), restores the rest."""

    __slots__ = ("vault",)

    def __init__(self, vault: Vault) -> None:
        self.vault = vault

    def hold(self, pending: str) -> int:
        start = pending.rfind("<", max(0, len(pending) - self.vault.longest + 1))
        if start < 0 or not _PARTIAL.fullmatch(pending, start):
            return 0
        return len(pending) - start

    def release(self, text: str, json_string: bool, channel: Channel) -> str:
        return self.vault.restore(text, json_string)


class ContentGate:
    """Holds back a possible blocked-word start; checks released text with what was sent before."""

    __slots__ = ("policies", "sent", "tally")

    def __init__(self, policies: list[ContentPolicy], tally: Callable[[str], Counter[str]]) -> None:
        self.policies = policies
        self.tally = tally
        self.sent: dict[Channel, str] = {}

    def hold(self, pending: str) -> int:
        return max(policy.hold(pending) for policy in self.policies)

    def release(self, text: str, json_string: bool, channel: Channel) -> str:
        context = self.sent.get(channel, "")
        for policy in self.policies:
            text = policy.check(text, self.tally(policy.name), "reply", context)
        self.sent[channel] = (context + text)[-CONTEXT:]
        return text


def _analyzer(spec: GuardrailSpec) -> Analyzer:
    """The span finder of a PII guardrail: built in, or Presidio's (imported only when used)."""
    if spec.engine == "presidio":
        from parley.filters.guardrails.presidio import PresidioAnalyzer

        return PresidioAnalyzer(frozenset(spec.entities), spec.patterns, spec.phone_regions)
    return PiiAnalyzer(frozenset(spec.entities), spec.patterns, spec.phone_regions)


def _stream_error(ctx: RequestContext, run: _Run, error: ContentBlocked) -> StreamEvent:
    run.blocked = True
    ctx.error_type = "guardrail_blocked"
    ctx.error_message = error.message
    _summary(ctx, run)
    if ctx.api == "openai":
        return StreamEvent(None, openai_stream_error(error.type, error.message), "")
    payload = {
        "type": "error",
        "error": {"type": error.type, "message": error.message},
        "request_id": ctx.request_id,
    }
    return StreamEvent("error", payload, "")


def _names(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        value = list(value)
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return value
    raise invalid_request("guardrails: must be a list of guardrail names")


def _json(body: bytes) -> dict[str, Any] | None:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    return data if isinstance(data, dict) else None


def _summary(ctx: RequestContext, run: _Run) -> str:
    """The `x-parley-guardrails` value (also kept for the spend log), and the counted actions."""
    parts = []
    actions = []
    for spec in run.active:
        tally = run.tallies.get(spec.name, Counter())
        for key, count in sorted(tally.items()):
            action, _, target = key.partition(":")
            actions.append(GuardrailAction(spec.name, action, target, count))
        parts.append(f"{spec.name}:{run.results.get(spec.name) or _result(spec, tally)}")
    ctx.guardrail_actions = actions
    ctx.guardrail_summary = ",".join(parts)
    ctx.response_headers[HEADER] = ctx.guardrail_summary
    return ctx.guardrail_summary


def _result(spec: GuardrailSpec, tally: Counter[str]) -> str:
    counts: Counter[str] = Counter()
    for key, n in tally.items():
        counts[key.partition(":")[0]] += n
    if counts["error"]:
        return "error"
    if counts["block"]:
        return "blocked" if not spec.logging_only else f"found={counts['block']}"
    if spec.logging_only and counts:
        return f"found={sum(counts.values())}"
    words = [
        f"{name}ed={counts[name]}" if name != "mask" else f"masked={counts[name]}"
        for name in ("mask", "redact")
        if counts[name]
    ]
    if counts["flag"]:
        words.append("flagged")
    return ";".join(words) or "pass"


__all__ = ["HEADER", "PLACEHOLDER", "ContentGate", "Guardrails", "PiiRestore", "RestoreGate"]
