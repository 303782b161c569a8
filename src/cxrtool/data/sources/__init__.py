"""Raw dataset sources: one module per publisher layout, each yielding rows for `prepare`."""
