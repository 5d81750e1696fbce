"""From data to a published version: pretrain and publish an encoder, fine-tune and publish a
head."""
