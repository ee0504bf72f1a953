"""Generate music from a trained checkpoint (or a training run folder): MIDI, piano roll, WAV."""

import hydra
from omegaconf import DictConfig, OmegaConf

from deeporb.errors import exit_on_user_error


@hydra.main(version_base="1.3", config_path="configs", config_name="sample")
@exit_on_user_error
def main(cfg: DictConfig) -> None:
    from deeporb.stages.sample import print_summary, sample

    results = sample(
        ckpt_path=cfg.ckpt_path,
        out_dir=cfg.out_dir,
        num_samples=cfg.num_samples,
        bars=cfg.bars,
        temperature=cfg.temperature,
        top_k=cfg.top_k,
        top_p=cfg.top_p,
        seed=cfg.seed,
        instruments=OmegaConf.to_container(cfg.instruments) if cfg.instruments is not None else None,
        primer=cfg.primer,
        primer_bars=cfg.primer_bars,
        keep_primer=cfg.keep_primer,
        tempo=cfg.tempo,
        render=OmegaConf.to_container(cfg.render),
        device=cfg.device,
    )
    print_summary(results, cfg.out_dir)
    if cfg.compare:
        from deeporb.stages.sample import compare_with_test_split

        compare_with_test_split(results, cfg.ckpt_path, cfg.out_dir)


if __name__ == "__main__":
    main()
