"""environment.yml and pyproject.toml name the same dependencies; the Dockerfile installs the package."""

import re
from pathlib import Path

import tomllib
import yaml

ROOT = Path(__file__).resolve().parents[1]


def _name(req: str) -> str:
    return re.split(r"[<>=!~\[ ]", req, maxsplit=1)[0].lower().replace("_", "-")


def test_environment_yml_matches_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    pip = [p for p in pip if not p.startswith("-e")]
    assert sorted(pip) == sorted(project["dependencies"])  # same names, same version bounds
    assert "-e ." in next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))


def test_torch_is_a_floor_not_a_pin():
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert "torch>=2.4" in deps
    assert not any(_name(d) == "torch" and "==" in d for d in deps)


def test_dockerfile_uses_cuda_pytorch_and_installs_the_package():
    text = (ROOT / "Dockerfile").read_text()
    base = re.search(r"^FROM (\S+)", text, re.M).group(1)
    assert base.startswith("pytorch/pytorch:") and "cuda" in base
    assert "pip install -e ." in text and 'ENTRYPOINT ["python"]' in text
    for entry in ("encode.py", "train.py", "sample.py"):
        assert (ROOT / entry).is_file()
