"""Built-in corpora exported from the music21 corpus (Bach chorales, folk tunes, Beethoven quartets)."""
