"""Records: the plain frozen records that flow between the stages, and their pure helpers (no I/O).

The lowest package of ``newsletter/``: every stage and ``storage/`` import it, it imports no stage."""
