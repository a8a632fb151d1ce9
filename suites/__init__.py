"""Suite files and the runner that executes them."""
