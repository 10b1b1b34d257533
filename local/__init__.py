"""Local tooling: the embedded AWS (local/aws), the demo and the drawing of machine.png."""
