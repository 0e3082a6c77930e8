"""Training a CogACT-style policy on demonstrations: data, augmentation, the diffusion objective."""
