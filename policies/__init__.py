"""CogACT-style vision-language-action policies built from transformers and diffusers parts."""
