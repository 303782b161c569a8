"""The `predict` stage: probabilities (and val-chosen calls) for loose X-ray files (`pipeline`)."""
