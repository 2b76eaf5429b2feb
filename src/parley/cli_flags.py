"""LiteLLM's command-line habits, accepted or answered with parley's equivalent.

`litellm --config x.yaml` becomes `parley --config x.yaml` (the `serve` is implied);
`--num_workers`, `--detailed_debug` and `--debug` are accepted by `parley serve`; the other
LiteLLM flags get one line saying what parley has instead.
"""

from __future__ import annotations

from types import MappingProxyType

TOP_LEVEL = ("-h", "--help", "--version")

# LiteLLM flag -> what to use in parley
ANSWERS = MappingProxyType(
    {
        "--api_base": "set api_base in the model's params in the config file",
        "--api_version": "set api_version in the model's params in the config file",
        "--alias": "use router_settings.model_group_alias in the config file",
        "--add_key": "create keys with POST /key/generate and the master key",
        "--max_budget": "set max_budget on keys (POST /key/generate) or teams",
        "--drop_params": "parley always drops parameters a backend cannot take (x-parley-dropped)",
        "--add_function_to_prompt": "not supported",
        "--temperature": "send temperature in the request",
        "--max_tokens": "send max_tokens in the request",
        "--request_timeout": "set router_settings.timeout (or litellm_settings.request_timeout)",
        "--telemetry": "parley sends no telemetry; drop the flag",
        "--run_gunicorn": "use --workers N",
        "--run_hypercorn": "use --workers N",
        "--use_queue": "not supported; parley serves requests directly",
        "--health": "GET /health/readiness on the running gateway",
        "--test": "point the anthropic or openai SDK at the gateway",
        "--local": "not needed",
        "--save": "not needed",
        "--ssl_keyfile_path": "terminate TLS in front of parley (docs/deploy.md)",
        "--ssl_certfile_path": "terminate TLS in front of parley (docs/deploy.md)",
        "--log_config": "use --log-level, or litellm_settings.json_logs: true",
        "--keepalive": "not needed",
        "--use_prisma_migrate": "parley migrates its database itself at startup",
        "--skip_server_startup": "not supported",
    }
)


def normalize(argv: list[str]) -> list[str]:
    """`parley --config F ...` as `parley serve --config F ...`."""
    if argv and argv[0].startswith("-") and argv[0] not in TOP_LEVEL:
        return ["serve", *argv]
    return argv


def answer(argv: list[str]) -> str | None:
    """The one-line answer for the first LiteLLM flag parley does not take, if any."""
    for arg in argv:
        flag = arg.split("=", 1)[0]
        if flag in ANSWERS:
            return f"{flag} is a LiteLLM flag parley does not take: {ANSWERS[flag]}"
    return None
