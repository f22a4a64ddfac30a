"""The project folders (experiments/, search_spaces/, native/) are found from a checkout and from
an installed wheel, and moved module paths still import for one release, with a warning."""
import importlib
import subprocess
import sys
import warnings
import zipfile
from pathlib import Path

import pytest

from autodsnn import _deprecated
from autodsnn.errors import AutoDSNNError
from autodsnn.resources import FOLDERS, project_folder

ROOT = Path(__file__).resolve().parents[1]


def test_checkout_folders():
    for name in ("experiments", "search_spaces", "native"):
        assert project_folder(name) == ROOT / name
    with pytest.raises(AutoDSNNError, match="unknown project folder 'nativ'"):
        project_folder("nativ")


def test_an_installed_wheel_finds_its_folders_without_a_checkout(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(tmp_path / "dist"), str(ROOT)], check=True, capture_output=True, timeout=300)
    wheel = next((tmp_path / "dist").glob("autodsnn-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    for folder, example in (("experiments", "default.yaml"), ("search_spaces", "dsnn.yaml"),
                            ("native", "shift_cpu.cpp")):
        assert any(n.endswith(f"data/share/autodsnn/{folder}/{example}") for n in names), folder
    # A bare environment with the wheel laid out as pip installs one: package files in
    # site-packages, "<name>.data/data/*" under the prefix. (pip itself would first uninstall the
    # editable install of the environment running these tests.)
    env = tmp_path / "env"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env)], check=True, timeout=120)
    site = next(env.glob("lib/python*/site-packages"))
    with zipfile.ZipFile(wheel) as archive:
        for name in archive.namelist():
            head, _, rest = name.partition(".data/data/")
            target = env / rest if rest and head.startswith("autodsnn-") else site / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(archive.read(name))
    code = ("from autodsnn.resources import project_folder as f; "
            "print(f('experiments')); print(f('native')); print(sorted(p.name for p in f('search_spaces').iterdir()))")
    out = subprocess.run([str(tmp_path / "env" / "bin" / "python"), "-c", code], cwd=tmp_path, capture_output=True,
                         text=True, timeout=60, check=True).stdout.splitlines()
    assert out[0] == str(tmp_path / "env" / "share" / "autodsnn" / "experiments")
    assert out[1] == str(tmp_path / "env" / "share" / "autodsnn" / "native")
    assert out[2] == str(sorted(p.name for p in (Path(__file__).resolve().parents[1] / "search_spaces").glob("*.yaml")))
    assert "benchmarks" in FOLDERS  # checkouts only: not in the wheel


@pytest.mark.parametrize("old", sorted(_deprecated.MOVED))
def test_moved_modules_still_import_with_a_warning(old):
    sys.modules.pop(old, None)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        module = importlib.import_module(old)
    assert any(issubclass(w.category, DeprecationWarning) and old in str(w.message) for w in caught)
    new = [importlib.import_module(n) for n in _deprecated.MOVED[old]]
    public = [name for m in new for name in getattr(m, "__all__", [n for n in vars(m) if not n.startswith("_")])]
    assert public and all(getattr(module, name) is not None for name in public[:20])
    with pytest.raises(AttributeError, match="moved to"):
        getattr(module, "no_such_name")


def test_old_paths_the_readme_named_keep_their_names():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from autodsnn.models import create_model
        from autodsnn.optimize import optimize, summarize
        from autodsnn.train import HParams, train_trial
    from autodsnn.analysis import summarize as new_summarize
    from autodsnn.search import optimize as new_optimize
    from autodsnn.trial import HParams as NewHParams
    from autodsnn.zoo import create_model as new_create_model
    assert (create_model, optimize, summarize, HParams) == (new_create_model, new_optimize, new_summarize, NewHParams)
    assert callable(train_trial)
