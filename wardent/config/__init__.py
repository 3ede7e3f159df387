"""Configuration: YAML in, immutable typed settings out."""
