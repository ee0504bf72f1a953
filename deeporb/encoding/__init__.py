"""Words: the encoding config, vocabulary, notes <-> words, and the grammar they follow."""
