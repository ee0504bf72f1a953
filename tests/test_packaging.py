"""What installs what: the lean core and its extras, environment.yml in step with pyproject.toml,
the Dockerfile, and the one line a command prints when the extra it needs is missing."""

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib
import yaml

ROOT = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def _name(req: str) -> str:
    return re.split(r"[<>=!~\[ ]", req, maxsplit=1)[0].lower().replace("_", "-")


def test_environment_yml_matches_pyproject():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    assert sorted(p for p in pip if not p.startswith("-e")) == sorted(PROJECT["dependencies"])  # same bounds
    assert "-e ." in pip


def test_core_install_pins_no_sqlalchemy_and_the_extras_carry_the_plugins():
    core = {_name(d) for d in PROJECT["dependencies"]}
    extras = {name: {_name(d) for d in deps} for name, deps in PROJECT["optional-dependencies"].items()}
    assert not core & {"sqlalchemy", "alembic", "optuna", "hydra-optuna-sweeper", "hydra-submitit-launcher"}
    assert {"hydra-optuna-sweeper", "sqlalchemy", "alembic"} <= extras["sweep"]
    assert "hydra-submitit-launcher" in extras["slurm"]
    assert "hydra-joblib-launcher" in core  # no pins of its own: parallel multiruns work everywhere


def test_torch_is_a_floor_not_a_pin():
    assert "torch>=2.4" in PROJECT["dependencies"]
    assert not any(_name(d) == "torch" and "==" in d for d in PROJECT["dependencies"])


def test_dockerfile_uses_cuda_pytorch_and_installs_the_package():
    text = (ROOT / "Dockerfile").read_text()
    base = re.search(r"^FROM (\S+)", text, re.M).group(1)
    assert base.startswith("pytorch/pytorch:") and "cuda" in base
    assert 'pip install -e ".[sweep]"' in text and 'ENTRYPOINT ["python"]' in text
    for entry in ("encode.py", "train.py", "sample.py"):
        assert (ROOT / entry).is_file()
    for data in re.findall(r"\bdata=(\w+)", text):  # the usage comment's corpus exists
        assert (ROOT / "configs" / "data" / f"{data}.yaml").is_file(), data


def test_make_test_installs_every_extra_the_tests_use():
    text = (ROOT / "Makefile").read_text()
    installs = re.findall(r'pip install -q -e "?\.(?:\[([a-z,]+)\])?"?', text)
    assert "" in installs  # the core alone, for make demo
    assert set("dev,sweep,slurm".split(",")) <= set(",".join(installs).split(","))
    assert set(",".join(installs).split(",")) - {""} <= set(PROJECT["optional-dependencies"])


def test_every_plugin_train_py_checks_is_in_the_extra_it_names():
    tree = ast.parse((ROOT / "train.py").read_text())  # read, not imported: no torch needed
    [checks] = [ast.literal_eval(n.value) for n in tree.body if isinstance(n, ast.Assign) and n.targets[0].id == "EXTRAS"]
    extras = {name: {_name(d) for d in deps} for name, deps in PROJECT["optional-dependencies"].items()}
    assert {extra for _, extra in checks.values()} == {"sweep", "slurm"}
    for plugin, extra in checks.values():
        assert plugin.split(".")[1].replace("_", "-") in extras[extra], (plugin, extra)


# A sitecustomize that makes one package unimportable, as if its extra were not installed:
# Python imports it at start-up from PYTHONPATH, before train.py runs.
BLOCK = """\
import sys

class NotInstalled:
    def find_spec(self, name, path=None, target=None):
        if name == {blocked!r} or name.startswith({blocked!r} + "."):
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        return None

sys.meta_path.insert(0, NotInstalled())
"""


@pytest.mark.parametrize(
    "override, plugin, extra",
    [
        ("hparams_search=optuna", "hydra_plugins.hydra_optuna_sweeper", "sweep"),
        ("hydra/launcher=slurm_gpu", "hydra_plugins.hydra_submitit_launcher", "slurm"),
    ],
)
def test_a_missing_extra_gives_one_line_naming_it(tmp_path, override, plugin, extra):
    (tmp_path / "sitecustomize.py").write_text(BLOCK.format(blocked=plugin))
    env = dict(os.environ, PYTHONPATH=str(tmp_path), PYTHONWARNINGS="ignore", WANDB_MODE="disabled")
    probe = subprocess.run([sys.executable, "-c", f"import {plugin}"], capture_output=True, text=True, env=env)
    assert probe.returncode == 1 and "ModuleNotFoundError" in probe.stderr  # the shim works
    proc = subprocess.run(
        [sys.executable, str(ROOT / "train.py"), "-m", override, "model=lstm_small"],
        capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120,
    )
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stderr.strip().splitlines() == [
        f'error: {override} needs the {extra} extra: pip install "deeporb[{extra}]"'
    ]
    assert not (tmp_path / "outputs").exists() and not (tmp_path / "multirun").exists()  # nothing ran
