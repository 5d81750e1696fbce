"""Fine-tuning's methods and options: staged strategies, domain adaptation, semi-supervision."""
