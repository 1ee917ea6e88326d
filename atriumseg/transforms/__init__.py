"""MONAI transform chains: preprocessing (preprocessing), augmentation, header fixes (orientation,
axcodes: torch-free) and neighbour stacking (context). Import from the submodules."""
