"""What a person judges generated music by: its piano roll (:mod:`.roll`), its sound
(:mod:`.audio`), its score for notation programs (:mod:`.musicxml`) and the page of a sample
folder that shows them (:mod:`.page`)."""
