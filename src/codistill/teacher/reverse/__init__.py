"""The pieces of ``teach --mode reverse`` (REER for code; the mode is
:mod:`codistill.teacher.modes.reverse`): ``config`` (its ``mode_options``), ``segments`` (z as
rewritable segments), ``scoring`` (PPL(y|x,z) in the student's format, the score cache),
``search`` (the segment-by-segment search, pure), ``run`` (one row), ``summary`` (the manifest's
``mode_summary``). Importing this package imports no model library."""
