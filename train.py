"""Train an LSTM on one or more sessions: python train.py [data=...] [model=...] (configs/train.yaml)."""

import hydra
from omegaconf import DictConfig

import deeporb.stages.train  # noqa: F401 - registers the config resolvers before Hydra resolves
from deeporb.errors import exit_on_user_error


@hydra.main(version_base="1.3", config_path="configs", config_name="train")
@exit_on_user_error
def main(cfg: DictConfig) -> float | None:
    from deeporb.stages.train import train

    return train(cfg)


if __name__ == "__main__":
    main()
