"""Response objects: plain dicts with attribute access, so both `msg.content[0].text` and
`msg["content"][0]["text"]` work and the result validates as the official SDKs' types."""

from __future__ import annotations

from typing import Any


class Record(dict):
    """A dict whose keys are also attributes (recursively). Values parley adds that are not part
    of the wire shape (such as `cost`) live in the instance `__dict__`, outside the mapping."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def __setattr__(self, name: str, value: Any) -> None:
        self[name] = value

    def to_dict(self) -> dict:
        return _plain(self)


def wrap(value: Any) -> Any:
    """Convert nested dicts and lists into Records."""
    if isinstance(value, dict):
        return Record({k: wrap(v) for k, v in value.items()})
    if isinstance(value, list):
        return [wrap(v) for v in value]
    return value


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value
