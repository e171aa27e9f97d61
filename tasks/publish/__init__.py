"""The publish step: a promoted model and its card, released to the Hugging Face Hub or a local registry."""
