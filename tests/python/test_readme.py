"""The README's Python example, run as a user pastes it (models converted into ./models)."""

from __future__ import annotations

import os
import pathlib
import re
import subprocess
import sys

from conftest import REPO, SHARED, shared_model_dir


def test_readme_python_example_runs(model_paths, tmp_path: pathlib.Path) -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("## Python"):]
    code = re.search(r"```python\n(.*?)```", section, re.S)
    assert code, "README.md has no ```python block under '## Python'"
    shared_model_dir("bge-small-zh-v1.5")  # skips without ../shared
    work = tmp_path / "work"
    (work / "models").mkdir(parents=True)
    (tmp_path / "shared").symlink_to(SHARED.resolve())  # "../shared" as beside the repository
    for name in ("demo-mlm", "demo-uie"):
        (work / "models" / f"{name}.tbw").symlink_to(model_paths[name])
    run = subprocess.run([sys.executable, "-c", code.group(1)], cwd=work, env=dict(os.environ),
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert "TB_INVALID_REQUEST unknown field 'top_k'" in run.stdout
    assert "'人名'" in run.stdout
