"""How do people drive it? The command line (and, later, the REST service and dashboard)."""
