"""The evaluation protocol: the splits, each split's encoder and inputs, the methods, the scores."""
