"""Export: a model folder in other tools' formats (a MONAI bundle: :mod:`.monai_bundle`)."""
