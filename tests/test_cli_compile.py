"""``diffgates compile`` end to end: train a tiny MONK-1 net, compile it, and check the report.

Run: python -m pytest tests/test_cli_compile.py -q   (needs ../shared/data and a C compiler)
"""
import json
import shutil
from pathlib import Path

import pytest

from diffgates.cli import main

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
pytestmark = [pytest.mark.skipif(not (DATA / "uci" / "monk").is_dir(), reason=f"no dataset files in {DATA}"),
              pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler")]


def test_compile_trained_run_is_bit_exact(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--dataset", "monk1", "-k", "48", "-l", "2", "-t", "3", "-bs", "16", "-ni", "40",
                 "-ef", "40", "--seed", "1", "--threads", "1", "--no-progress", "--data-dir", str(DATA),
                 "--out", str(run)]) == 0
    capsys.readouterr()
    assert main(["compile", str(run), "--data-dir", str(DATA), "--threads", "2", "--repeats", "2"]) == 0
    out = capsys.readouterr().out
    assert "class counts identical on every image: True" in out
    report = json.loads((run / "compiled.json").read_text())
    results = json.loads((run / "results.json").read_text())
    assert report["bit_exact_with_model"] is True
    assert report["test_images"] == 432  # MONK-1's official test file
    # The compiled circuit's accuracy is the trained model's recorded discrete accuracy, exactly.
    assert report["compiled_test_acc"] == report["model_test_acc_eval_mode"] == results["test_acc_eval_mode"]
    assert report["gates_before"] == 96 and 0 < report["gates_after"] <= 96
    assert set(report["images_per_second"]) == {"1", "2"} and min(report["images_per_second"].values()) > 0


def test_compile_missing_run_is_a_clear_error(tmp_path, capsys):
    assert main(["compile", str(tmp_path / "nope")]) == 3  # a missing file
    assert "nope" in capsys.readouterr().err
