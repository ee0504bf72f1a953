"""Shared pytest fixtures."""

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def chorale_midi_dir(tmp_path_factory) -> Path:
    """A folder of 6 real Bach chorales (4 tracks: soprano/alto/tenor/bass), exported once.

    Real MIDI input for any test: music21's corpus exported by deeporb.datasets (~1 s).
    """
    from deeporb.datasets import export_dataset

    folder = export_dataset("bach_chorales", tmp_path_factory.mktemp("datasets"), limit=6)
    assert len(list(folder.glob("*.mid"))) == 6, f"expected 6 chorales in {folder}"
    return folder
