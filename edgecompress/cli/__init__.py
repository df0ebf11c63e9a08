"""The Invoke tasks (`invoke TASK`, `edgecompress TASK`) and their glue. Thin: each calls the package."""
