"""The thesis' figures, one module per figure kind, on a shared style (:mod:`.style`: fixed rcParams, and files
written byte-identically on every re-run). Each figure notebook imports :mod:`.style` and its own module only."""
