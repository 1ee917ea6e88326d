"""Training and evaluation: MSD-layout datasets, balanced sampling, the trainer, distributed runs, evaluation."""
