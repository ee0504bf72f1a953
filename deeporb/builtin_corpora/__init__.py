"""Built-in corpora exported from the music21 corpus (Bach chorales, folk tunes, Beethoven quartets).

``specs`` says what each corpus is (which files, which parts become which tracks), ``convert``
turns one piece into MIDI (repairing what music21 misreads), ``export`` caches a whole corpus
as a folder of MIDI files. Nothing here downloads anything or imports torch.
"""
