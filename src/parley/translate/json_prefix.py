"""Incremental check that streamed tool arguments are still a prefix of one JSON object.

Used to stream `input_json_delta` fragments the moment they arrive while never forwarding a
fragment that would make the client's partial-JSON parser fail: `feed` returns how much of the
fragment keeps the text a valid prefix, and `complete` says when the object has closed.
"""

from __future__ import annotations

import re

_WS = frozenset(" \t\n\r")
_STRING_STOP = re.compile(r'["\\\x00-\x1f]')
_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")
_TOKEN_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.+-")
_LITERALS = ("true", "false", "null")
_ESCAPES = frozenset('"\\/bfnrt')
_HEX = frozenset("0123456789abcdefABCDEF")

# grammar states
_START, _VALUE, _FIRST_KEY, _KEY, _COLON, _AFTER, _FIRST_ITEM, _DONE = range(8)


class JsonPrefix:
    """Feed fragments of one JSON object; learn whether they still parse as its beginning."""

    __slots__ = ("_escape", "_hex_left", "_in_string", "_is_key", "_stack", "_state", "_token", "valid")

    def __init__(self) -> None:
        self._state = _START
        self._stack: list[str] = []
        self._in_string = False
        self._is_key = False
        self._escape = False
        self._hex_left = 0  # hex digits still due after `\u`
        self._token = ""
        self.valid = True

    @property
    def complete(self) -> bool:
        """The root object has closed (only whitespace may follow)."""
        return self._state == _DONE

    @property
    def empty(self) -> bool:
        return self._state == _START

    def feed(self, fragment: str) -> int:
        """How many leading characters of `fragment` keep the text a valid JSON-object prefix."""
        if not self.valid:
            return 0
        i, n = 0, len(fragment)
        while i < n:
            if self._in_string:
                i = self._scan_string(fragment, i)
                if not self.valid:
                    return i
                continue
            if not self._step(fragment[i]):
                self.valid = False
                return i
            i += 1
        return n

    def _scan_string(self, text: str, i: int) -> int:
        if self._escape or self._hex_left:
            return self._scan_escape(text[i], i)
        match = _STRING_STOP.search(text, i)
        if match is None:
            return len(text)
        j = match.start()
        char = text[j]
        if char == "\\":
            self._escape = True
            return j + 1
        if char == '"':
            self._in_string = False
            self._state = _COLON if self._is_key else _AFTER
            return j + 1
        self.valid = False  # a raw control character inside a string
        return j

    def _scan_escape(self, char: str, i: int) -> int:
        """One character of an escape sequence: `\\` then one of `"\\/bfnrt`, or `u` and 4 hex digits."""
        if self._hex_left:
            ok = char in _HEX
            self._hex_left -= 1
        else:
            ok = char in _ESCAPES or char == "u"
            self._escape = False
            self._hex_left = 4 if char == "u" else 0
        if not ok:
            self.valid = False
            return i
        return i + 1

    def _step(self, char: str) -> bool:
        if self._token:
            if char in _TOKEN_CHARS:
                return self._extend_token(char)
            if not self._close_token():
                return False
        if char in _WS:
            return True
        state = self._state
        if state == _START:
            return self._open(char) if char == "{" else False
        if state in (_VALUE, _FIRST_ITEM):
            if state == _FIRST_ITEM and char == "]":
                return self._close("[")
            return self._value(char)
        if state in (_FIRST_KEY, _KEY):
            if state == _FIRST_KEY and char == "}":
                return self._close("{")
            if char == '"':
                self._in_string, self._is_key = True, True
                return True
            return False
        if state == _COLON:
            if char == ":":
                self._state = _VALUE
                return True
            return False
        if state == _AFTER:
            if char == ",":
                self._state = _KEY if self._stack[-1] == "{" else _VALUE
                return True
            if char in "}]":
                return self._close("{" if char == "}" else "[")
            return False
        return False  # _DONE: nothing but whitespace may follow

    def _value(self, char: str) -> bool:
        if char in "{[":
            return self._open(char)
        if char == '"':
            self._in_string, self._is_key = True, False
            return True
        if char in "-0123456789tfn":
            return self._extend_token(char)
        return False

    def _open(self, char: str) -> bool:
        self._stack.append(char)
        self._state = _FIRST_KEY if char == "{" else _FIRST_ITEM
        return True

    def _close(self, opener: str) -> bool:
        if not self._stack or self._stack[-1] != opener:
            return False
        self._stack.pop()
        self._state = _AFTER if self._stack else _DONE
        return True

    def _extend_token(self, char: str) -> bool:
        token = self._token + char
        if (
            any(word.startswith(token) for word in _LITERALS)
            or _NUMBER.fullmatch(token)
            or _NUMBER.fullmatch(token + "0")
        ):
            self._token = token
            return True
        return False

    def _close_token(self) -> bool:
        token, self._token = self._token, ""
        if token in _LITERALS or _NUMBER.fullmatch(token):
            self._state = _AFTER
            return True
        return False
