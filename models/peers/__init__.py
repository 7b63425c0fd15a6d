"""Third-party denoisers wrapped as factories, entering the suite the way a user's model does
(`factory = "models.peers.<module>:<callable>"`), not as presets."""
