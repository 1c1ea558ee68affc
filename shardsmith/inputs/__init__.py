"""Input files: finding them, reading their metadata for the planner (``scan``), reading their rows
(``read``), and pushing predicates into the readers (``predicate``). Used by the compiler (metadata
only) and by the backends (data)."""
