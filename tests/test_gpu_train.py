"""bench/gpu_train.py: trains like the train stage with none of the pipeline's services."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from conftest import PROJECT_ROOT, write_params

from denoise.core.config import Params

# What a GPU host may lack: importing any of these makes the script fail here.
BLOCKED = ("mlflow", "dvc", "prefect", "great_expectations", "typer")


def test_trains_from_raw_videos_without_tracking_or_orchestration(
    params: Params, tmp_path: Path
) -> None:
    params_file = write_params(params, tmp_path / "params.yaml")
    out = tmp_path / "out"
    runner = (
        "import runpy, sys\n"
        f"for name in {BLOCKED!r}:\n"
        "    sys.modules[name] = None  # import raises ImportError\n"
        f"sys.argv = ['gpu_train.py', '--params', {str(params_file)!r}, '--prepare',\n"
        f"            '--models', 'paper_cae', '--epochs', '3', '--out', {str(out)!r}]\n"
        f"runpy.run_path({str(PROJECT_ROOT / 'bench' / 'gpu_train.py')!r}, run_name='__main__')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", runner], capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "| paper_cae | 29,507 | float32 |" in result.stdout
    report = json.loads((out / "gpu_train.json").read_text())
    summary = report["models"]["paper_cae"]
    assert summary["epochs"] == 3 and summary["epochs_timed"] == 2
    assert summary["images_per_second"] > 0 and not summary["includes_compile"]
    assert summary["noise"]["kind"] == params.noise.train.kind
    assert (out / "models" / "paper_cae.keras").is_file()
    assert (Path(params.paths.frames) / "manifest.parquet").is_file()
