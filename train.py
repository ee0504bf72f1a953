"""Train an LSTM on one or more sessions: python train.py [data=...] [model=...] (configs/train.yaml)."""

import importlib.util
import sys

import hydra
from omegaconf import DictConfig

import deeporb.stages.train  # noqa: F401 - registers the config resolvers before Hydra resolves
from deeporb.errors import exit_on_user_error

# Config choices that load a Hydra plugin from an optional extra -> (the plugin, the extra).
# Without the plugin, Hydra fails deep in composition ("Could not find 'hydra/sweeper/optuna'"),
# which does not say what to install.
EXTRAS = {
    "hparams_search=optuna": ("hydra_plugins.hydra_optuna_sweeper", "sweep"),
    "hydra/sweeper=optuna": ("hydra_plugins.hydra_optuna_sweeper", "sweep"),
    "hydra/launcher=slurm_gpu": ("hydra_plugins.hydra_submitit_launcher", "slurm"),
    "hydra/launcher=submitit_slurm": ("hydra_plugins.hydra_submitit_launcher", "slurm"),
    "hydra/launcher=submitit_local": ("hydra_plugins.hydra_submitit_launcher", "slurm"),
}


def require_extras(overrides: list[str]) -> None:
    """Exit with one line naming the extra when an override picks a plugin that is not installed."""
    for choice in (o.lstrip("+~") for o in overrides):
        if choice in EXTRAS:
            plugin, extra = EXTRAS[choice]
            try:
                found = importlib.util.find_spec(plugin) is not None
            except ImportError:  # no hydra_plugins package at all
                found = False
            if not found:
                print(f'error: {choice} needs the {extra} extra: pip install "deeporb[{extra}]"', file=sys.stderr)
                sys.exit(2)


@hydra.main(version_base="1.3", config_path="configs", config_name="train")
@exit_on_user_error
def main(cfg: DictConfig) -> float | None:
    from deeporb.stages.train import train

    return train(cfg)


if __name__ == "__main__":
    require_extras(sys.argv[1:])
    main()
