"""A run from the notebook side: start it (capture the cell's objects, write its
folder, launch it on a backend), follow it live, stop, resume and rerun it, and
the objects the API hands back (`Run`, tables, details)."""
