"""The artifact scanner: finds code that would run when a file is loaded, without loading it."""
