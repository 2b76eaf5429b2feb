"""The README's SDK example runs as written (it uses the offline mock model)."""

from __future__ import annotations

import pathlib
import re
import subprocess
import sys

README = pathlib.Path(__file__).resolve().parent.parent / "README.md"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), re.S)


def test_sdk_example_runs_as_written(tmp_path):
    [example] = [block for block in python_blocks() if "import parley" in block]
    script = tmp_path / "example.py"
    script.write_text(example)
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "Hello from parley-mock. You said: Hello 0.0"
    assert lines[1] == "Hello from parley-mock. You said: Hello"
    assert lines[2] == "Hello from parley-mock. You said: Hi"
    assert lines[3] == "Hello from parley-mock. You said: hi"
