"""The YAML config (LiteLLM-compatible for the parts parley supports), loaded and validated.

`load_config(path)` / `build_config(doc, path)` / `quick_config(model)` return a `Config`: the
deployments, typed settings per section (`config.general`, `.router`, `.redis`,
`.default_limits`, `.litellm`, `.passthrough`) and `config.ignored`, the keys parley does not act on.
Modules: `loader` (YAML, env references, model_list), `sections` and `routing` (typed settings),
`known` (which keys parley acts on), `fields` (typed reads, ConfigError).
"""

from parley.config.batches import BatchSettings
from parley.config.fields import ConfigError
from parley.config.known import ignored_keys
from parley.config.loader import (
    DEFAULT_TIMEOUT,
    ENV_PREFIX,
    PROVIDERS,
    Config,
    build_config,
    load_config,
    quick_config,
)
from parley.config.routing import STRATEGIES, DefaultLimits, RedisSettings, RouterSettings
from parley.config.sections import (
    DEFAULT_MAX_REQUEST_BYTES,
    CacheParams,
    GeneralSettings,
    LitellmSettings,
    PassthroughSettings,
)

__all__ = [
    "DEFAULT_MAX_REQUEST_BYTES",
    "DEFAULT_TIMEOUT",
    "ENV_PREFIX",
    "PROVIDERS",
    "STRATEGIES",
    "BatchSettings",
    "CacheParams",
    "Config",
    "ConfigError",
    "DefaultLimits",
    "GeneralSettings",
    "LitellmSettings",
    "PassthroughSettings",
    "RedisSettings",
    "RouterSettings",
    "build_config",
    "ignored_keys",
    "load_config",
    "quick_config",
]
