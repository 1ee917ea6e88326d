"""Image I/O: readers, volumes and their geometry, atomic writing and the overwrite rule."""
