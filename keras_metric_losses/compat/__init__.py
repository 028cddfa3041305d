"""The originals' names, settings and configs, in one executable place per original library."""
