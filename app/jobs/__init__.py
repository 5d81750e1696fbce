"""Fine-tuning jobs: where they run (executors), running one by id, housekeeping, the door into training."""
