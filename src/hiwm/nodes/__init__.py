"""Node executables: each module wires topics to a plain-Python core and calls run_node."""
