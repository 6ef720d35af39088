"""modulectl: the command-line client of the moduled daemon."""
