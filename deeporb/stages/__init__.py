"""The stages behind the Hydra apps: encode, train, sample, evaluate (what each app runs)."""
