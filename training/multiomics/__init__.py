"""Multi-omics classifiers: data, network, fine-tuning, export, publication, evaluation."""
