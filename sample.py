"""Generate music from a trained checkpoint, a training run folder or a bundled model
(``pretrained:NAME``; with no ``ckpt_path``, ``pretrained:bach_chorales``): MIDI, piano roll, WAV.

Settings and their defaults: :class:`deeporb.stages.sample.SampleConfig` (configs/sample.yaml).
"""

import hydra
from omegaconf import OmegaConf

from deeporb.errors import exit_on_user_error
from deeporb.stages.sample import SampleConfig, run  # importing it registers the config schema


@hydra.main(version_base="1.3", config_path="configs", config_name="sample")
@exit_on_user_error
def main(cfg: SampleConfig) -> None:
    run(OmegaConf.to_object(cfg))


if __name__ == "__main__":
    main()
