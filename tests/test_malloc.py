"""diffgates._malloc: the CLI's glibc malloc settings apply on Linux/glibc and yield to the user's own."""
import os
import subprocess
import sys

import pytest

MODULE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src", "diffgates", "_malloc.py")
# Run the module file alone: importing the package would pull in torch for nothing.
CHECK = f"import runpy; print(runpy.run_path({MODULE!r})['keep_freed_memory']())"


def _glibc() -> bool:
    try:
        return os.confstr("CS_GNU_LIBC_VERSION").startswith("glibc")
    except (AttributeError, ValueError, OSError):
        return False


def _applied(env: dict[str, str]) -> str:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != "GLIBC_TUNABLES"}
    proc = subprocess.run([sys.executable, "-c", CHECK], env={**clean, **env}, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


@pytest.mark.skipif(not (sys.platform.startswith("linux") and _glibc()), reason="glibc only")
def test_applies_on_glibc_and_yields_to_user_settings():
    assert _applied({}) == "True"
    assert _applied({"MALLOC_ARENA_MAX": "2"}) == "False"
    assert _applied({"GLIBC_TUNABLES": "glibc.malloc.trim_threshold=0"}) == "False"


def test_does_nothing_off_linux(monkeypatch):
    from diffgates import _malloc

    monkeypatch.setattr(_malloc.sys, "platform", "darwin")
    assert _malloc.keep_freed_memory() is False
