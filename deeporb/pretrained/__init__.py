"""The bundled models: ``NAME.ckpt`` + ``NAME.md`` in this folder, shipped with the package.

``ckpt_path=pretrained:NAME`` loads one (:func:`deeporb.checkpoints.resolve_checkpoint`), and
``sample.py`` and ``serve.py`` load ``pretrained:bach_chorales`` when no ``ckpt_path`` is given.
Each is an artifact of a config in the repository: ``make pretrained`` trains
``experiment=pretrained_NAME`` and exports the run with ``python -m deeporb.pretrained export RUN NAME``
(:mod:`deeporb.pretrained.export`: the compact file and its card).
"""
