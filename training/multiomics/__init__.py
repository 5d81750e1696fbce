"""Multi-omics classifiers: the data, the multi-input network, its fine-tuning, export, publication
and evaluation."""
