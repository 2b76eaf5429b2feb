"""Pure translators between the Anthropic Messages and OpenAI Chat Completions wire formats.

No I/O here: plain dicts in, plain dicts (or event lists) out, shared by the server and the SDK.
"""
