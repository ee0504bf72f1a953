"""What a person judges generated music by: its piano roll (:mod:`.roll`), its sound
(:mod:`.audio`) and the page of a sample folder that shows both (:mod:`.page`)."""
