"""What fine-tuning adds beyond a head on fixed features: the options, staged strategies, domain
adaptation, semi-supervision."""
