"""The network (unet), its self-describing card (card, torch-free) and safe checkpoints (checkpoint)."""
