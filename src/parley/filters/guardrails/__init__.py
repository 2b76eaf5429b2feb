"""Guardrails (docs/guardrails.md): `filter` (the two filters and which guardrails run), `pii`
(recognizers), `mask` (placeholders), `content` (blocked words and regexes), `injection` (the
heuristic), `walk` (the text slots of bodies and replies), `stream` (editing streamed replies)."""
