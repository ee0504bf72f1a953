"""Shared pytest fixtures."""

from pathlib import Path

import pytest
import torch


@pytest.fixture(scope="session", autouse=True)
def one_torch_thread():
    """Tests run two to a 2-core machine (pytest -n 2): one torch thread per worker, since
    oversubscribed threads spin and slow training down badly."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def chorale_midi_dir(tmp_path_factory) -> Path:
    """A folder of 6 real Bach chorales (4 tracks: soprano/alto/tenor/bass), exported once.

    Real MIDI input for any test: music21's corpus exported by deeporb.builtin_corpora.export (~1 s).
    """
    from deeporb.builtin_corpora.export import export_dataset

    folder = export_dataset("bach_chorales", tmp_path_factory.mktemp("datasets"), limit=6).folder
    assert len(list(folder.glob("*.mid"))) == 6, f"expected 6 chorales in {folder}"
    return folder


@pytest.fixture(scope="session")
def chorale_sessions_dir(chorale_midi_dir, tmp_path_factory) -> Path:
    """A sessions folder holding ``chorales``: the 6 exported chorales encoded with voices as
    instruments (soprano/alto/tenor/bass). Split by the default fractions (0.1/0.1) they give
    4 train, 1 val and 1 test piece. Treat as read-only: copy it to change files.
    """
    from deeporb.stages.encode import encode_session

    sessions = tmp_path_factory.mktemp("sessions")
    encode_session(midi_dir=str(chorale_midi_dir), session="chorales", sessions_dir=str(sessions),
                   instrument_key="name", workers=1)
    return sessions
