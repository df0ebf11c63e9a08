"""One build of one recipe: options, its steps, converting and measuring, the quality gate, preflight."""
