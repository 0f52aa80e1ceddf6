"""`cmake --install BUILD --component python` (what scripts/install_python.sh runs) gives a
package that imports and runs on its own: installed into a DESTDIR, imported from there in a
fresh interpreter that sees neither the build tree nor the sources."""

from __future__ import annotations

import json
import os
import pathlib
import re
import subprocess
import sys
import sysconfig
from typing import Dict

import numpy as np
import pytest

import tinybert


def cache_value(build: pathlib.Path, name: str) -> str:
    text = (build / "CMakeCache.txt").read_text(encoding="utf-8")
    match = re.search(rf"^{name}:[A-Z]+=(.*)$", text, re.MULTILINE)
    assert match, f"{name} not in {build}/CMakeCache.txt"
    return match[1]


def test_install_component_python(tmp_path: pathlib.Path,
                                  tiny_paths: Dict[str, pathlib.Path]) -> None:
    build = os.environ.get("TINYBERT_BUILD_DIR")
    if not build or not (pathlib.Path(build) / "CMakeCache.txt").is_file():
        pytest.skip("TINYBERT_BUILD_DIR (the build tree; CTest sets it) is not set")
    cmake = os.environ.get("TINYBERT_CMAKE", "cmake")
    destdir = tmp_path / "destdir"
    done = subprocess.run([cmake, "--install", build, "--component", "python"],
                          env={**os.environ, "DESTDIR": str(destdir)}, capture_output=True,
                          text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr

    install_dir = cache_value(pathlib.Path(build), "TINYBERT_PYTHON_INSTALL_DIR")
    if not os.path.isabs(install_dir):
        install_dir = os.path.join(cache_value(pathlib.Path(build), "CMAKE_INSTALL_PREFIX"),
                                   install_dir)
    if cache_value(pathlib.Path(build), "Python_EXECUTABLE") == sys.executable:
        # the default: the site dir of this Python (Debian: /usr/local/lib/python3.11/dist-packages)
        assert install_dir == sysconfig.get_path("platlib")
    site = pathlib.Path(str(destdir) + install_dir)
    package = site / "tinybert"
    names = sorted(p.name for p in package.iterdir())
    assert {"__init__.py", "_errors.py", "_model.py", "_pipelines.py", "_native.pyi",
            "py.typed"} <= set(names)
    assert any(n.startswith("_native.") and n.endswith(".so") for n in names), names
    # Everything of the engine is inside the extension: no libtinybert.so next to it.
    assert not [n for n in names if n.startswith("libtinybert")]

    script = (
        "import json, sys, tinybert\n"
        "m = tinybert.Model(sys.argv[1], backend='f32')\n"
        "print(json.dumps({'file': tinybert.__file__, 'version': tinybert.__version__,\n"
        "                  'vector': m.embed('我是中国人').tolist()}))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env["PYTHONPATH"] = str(site)
    env["PYTHONNOUSERSITE"] = "1"
    done = subprocess.run([sys.executable, "-c", script, str(tiny_paths["tiny-bert"])],
                          cwd=tmp_path, env=env, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["file"] == str(package / "__init__.py")
    assert out["version"] == tinybert.__version__
    with tinybert.Model(tiny_paths["tiny-bert"], backend="f32") as model:
        np.testing.assert_allclose(out["vector"], model.embed("我是中国人"), atol=1e-6)
