"""Fine-tuning jobs: executors, running one by id, housekeeping, the one door into training."""
