"""The app factory uvicorn imports in each worker; the CLI passes its choices through the env."""

from __future__ import annotations

import os

from starlette.applications import Starlette

from parley.config import Config, load_config, quick_config
from parley.logs import setup_logging
from parley.server.app import create_app

CONFIG_ENV = "PARLEY_CONFIG"
MODEL_ENV = "PARLEY_QUICK_MODEL"


def config_from_env() -> Config:
    model = os.environ.get(MODEL_ENV)
    if model:
        return quick_config(model)
    return load_config(os.environ[CONFIG_ENV])


def app() -> Starlette:
    setup_logging(os.environ.get("PARLEY_LOG_LEVEL", "info"))
    return create_app(config_from_env())
