"""Generation: the draw (top-k/top-p), grammar masks, the batched loop, prompts and primers."""
