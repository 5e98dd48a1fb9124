"""The command line's one error policy (``diffgates.commands.errors``): every user-facing error of every
command is one stderr line ``diffgates CMD: error: ...`` naming the bad value or path, with one exit code
per kind; an unexpected exception (a bug) keeps its traceback. Run: python -m pytest tests/test_cli_errors.py -q
"""
from __future__ import annotations

import errno
import importlib
import os

import pytest
import torch

from circuit_cases import random_model
from diffgates import __version__
from diffgates.cli import main
from diffgates.commands import errors
from diffgates.frontend import to_circuit


@pytest.fixture
def circuit_file(tmp_path):
    path = tmp_path / "tiny.circuit.json"
    to_circuit(random_model(6, [40, 20], 2, tau=2.0, seed=3)).save(path)
    return path


def one_error_line(capsys, command: str) -> str:
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"diffgates {command}: error: "), err
    return lines[0]


def test_version(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["--version"])
    assert stop.value.code == 0 and capsys.readouterr().out.strip() == f"diffgates {__version__}"


def test_help_documents_the_exit_codes(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "exit status: 0 success, 1 a check failed, 2 bad arguments" in out and "130 interrupted" in out


def test_every_command_reports_a_missing_input_the_same_way(tmp_path, capsys):
    missing = str(tmp_path / "missing")
    for argv in (["circuit", missing], ["compile", missing], ["eval", missing], ["export", "verilog", missing, "o.v"],
                 ["verify-verilog", missing]):
        assert main(argv) == errors.BAD_FILE, argv
        command = " ".join(argv[:2]) if argv[0] == "export" else argv[0]
        assert missing in one_error_line(capsys, command)


def test_a_corrupt_circuit_file_is_a_file_error(tmp_path, capsys):
    bad = tmp_path / "bad.circuit.json"
    bad.write_text('{"format": "diffgates-circuit", "format_version": 2, "ops": "nonsense"}')
    assert main(["export", "aiger", str(bad), str(tmp_path / "o.aag")]) == errors.BAD_FILE
    assert str(bad) in one_error_line(capsys, "export aiger")


def test_an_output_path_that_is_a_folder_is_an_os_error(circuit_file, tmp_path, capsys):
    folder = tmp_path / "taken"
    folder.mkdir()
    assert main(["circuit", str(circuit_file), "--out", str(folder)]) == errors.OS_REFUSED
    assert str(folder) in one_error_line(capsys, "circuit")


def test_device_without_cuda_is_a_bad_argument(tmp_path, capsys):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    assert main(["eval", str(tmp_path), "--device", "cuda"]) == errors.USAGE
    assert "CUDA is not available here" in one_error_line(capsys, "eval")
    assert main(["eval", str(tmp_path), "--device", "tpu"]) == errors.USAGE
    assert "'tpu'" in one_error_line(capsys, "eval")


def test_a_missing_compiler_is_a_tool_error(circuit_file, tmp_path, monkeypatch, capsys):
    import diffgates
    from diffgates import _native
    from diffgates.commands import compile as compile_command

    monkeypatch.setenv("DIFFGATES_CC", str(tmp_path / "no-such-cc"))
    _native.compiler_unavailable_reason.cache_clear()
    # The command's own run needs a trained run folder; building the engine of a circuit is the part that fails.
    monkeypatch.setattr(compile_command, "run", lambda args: diffgates.compile(diffgates.ir.Circuit.load(circuit_file)))
    try:
        assert main(["compile", str(circuit_file)]) == errors.TOOL_FAILED
        assert "no C compiler found" in one_error_line(capsys, "compile")
    finally:
        _native.compiler_unavailable_reason.cache_clear()


def test_interrupt_is_130_and_a_bug_keeps_its_traceback(circuit_file, monkeypatch, capsys):
    module = importlib.import_module("diffgates.commands.circuit")

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(module, "run", interrupted)
    assert main(["circuit", str(circuit_file)]) == errors.INTERRUPTED
    assert one_error_line(capsys, "circuit").endswith("error: interrupted")

    def buggy(args):
        raise TypeError("a bug")

    monkeypatch.setattr(module, "run", buggy)
    with pytest.raises(TypeError, match="a bug"):
        main(["circuit", str(circuit_file)])


@pytest.mark.parametrize("code, expected", [
    (errno.ENOSPC, "No space left on device; nothing was half-written"),
    (errno.ENAMETOOLONG, "at most 255 bytes"),
    (errno.EACCES, "choose a writable location"),
])
def test_os_errors_name_the_path_and_what_it_means(code, expected):
    exc = OSError(code, os.strerror(code), "/data/out/net.v")
    assert errors.exit_code(exc) == errors.OS_REFUSED
    text = errors.message(exc)
    assert text.startswith("/data/out/net.v: ") and expected in text
