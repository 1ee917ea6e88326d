"""MONAI transform chains: preprocessing (preprocessing), augmentation, header fixes (orientation) and
neighbour stacking (context). Import from the submodules."""
