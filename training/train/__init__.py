"""Training loops: pretraining, fine-tuning strategies, progress hooks, publishing runs."""
