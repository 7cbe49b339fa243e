"""Recovery drills: definitions and runs (``service``), sandboxes, compromise injectors."""
