"""What fine-tuning adds beyond a head on fixed features: staged strategies, domain adaptation,
semi-supervision."""
