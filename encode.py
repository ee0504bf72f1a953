"""Encode a folder of MIDI files (or a built-in corpus) into a session of word corpora."""

import hydra
from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf

from deeporb.errors import exit_on_user_error
from deeporb.stages.encode import EncodeConfig, encode_session, print_summary


def _schema() -> DictConfig:
    """EncodeConfig as a config node; its ``encoding`` (a frozen dataclass) made overridable."""
    node = OmegaConf.structured(EncodeConfig)
    OmegaConf.set_readonly(node.encoding, None)
    return node


ConfigStore.instance().store(name="encode_schema", node=_schema())


@hydra.main(version_base="1.3", config_path="configs", config_name="encode")
@exit_on_user_error
def main(cfg: DictConfig) -> None:
    settings: EncodeConfig = OmegaConf.to_object(cfg)
    manifest = encode_session(settings)
    print_summary(manifest, settings.sessions_dir)


if __name__ == "__main__":
    main()
