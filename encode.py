"""Encode a folder of MIDI files (or a built-in corpus) into a session of word corpora."""

import hydra
from omegaconf import DictConfig

from deeporb.errors import exit_on_user_error


@hydra.main(version_base="1.3", config_path="configs", config_name="encode")
@exit_on_user_error
def main(cfg: DictConfig) -> None:
    from deeporb.stages.encode import encode_session, print_summary

    manifest = encode_session(
        midi_dir=cfg.midi_dir,
        dataset=cfg.dataset,
        dataset_limit=cfg.dataset_limit,
        session=cfg.session,
        sessions_dir=cfg.sessions_dir,
        datasets_dir=cfg.datasets_dir,
        instrument_key=cfg.instrument_key,
        workers=cfg.workers,
        encoding=dict(cfg.encoding),
        progress=cfg.progress,
    )
    print_summary(manifest, cfg.sessions_dir)


if __name__ == "__main__":
    main()
