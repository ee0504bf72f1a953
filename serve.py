"""Serve a checkpoint over HTTP: a JSON API that generates music and a page to compose with.

    python serve.py [ckpt_path=RUN_OR_CKPT|pretrained:NAME] [host=127.0.0.1] [port=8000]   # default: pretrained:bach_chorales

Settings and their defaults: :class:`deeporb.serve.app.ServeConfig` (configs/serve.yaml).
"""

import hydra
from omegaconf import OmegaConf

from deeporb.errors import exit_on_user_error
from deeporb.serve.app import ServeConfig, run  # importing it registers the config schema


@hydra.main(version_base="1.3", config_path="configs", config_name="serve")
@exit_on_user_error
def main(cfg: ServeConfig) -> None:
    run(OmegaConf.to_object(cfg))


if __name__ == "__main__":
    main()
