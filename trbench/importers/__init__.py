"""`trbench import`: other libraries' runs as ordinary run folders, so reports compare them with
trbench's. One module per log format reads it (sb3, cleanrl, spinningup, tianshou, tidy_csv) into
:class:`~trbench.importers.source.SourceRun`; :mod:`~trbench.importers.writer` writes the folder."""
