"""Score checkpoints on their held-out test pieces beside an n-gram: python evaluate.py ckpt_path=RUN."""

import hydra
from hydra.core.config_store import ConfigStore
from omegaconf import OmegaConf

from deeporb.errors import exit_on_user_error
from deeporb.stages.evaluate import EvaluateConfig, evaluate

ConfigStore.instance().store(name="evaluate_schema", node=EvaluateConfig)


@hydra.main(version_base="1.3", config_path="configs", config_name="evaluate")
@exit_on_user_error
def main(cfg: EvaluateConfig) -> None:
    evaluate(OmegaConf.to_object(cfg))


if __name__ == "__main__":
    main()
