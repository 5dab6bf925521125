"""Built-in plugins: each module implements hooks like any third-party plugin."""
