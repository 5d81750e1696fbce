"""Training loops: the minibatch loop, pretraining, fine-tuning, validation, progress hooks."""
