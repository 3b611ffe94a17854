"""Where jobs run: the one job runner and the executor backends around it."""
