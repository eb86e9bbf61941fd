"""Reading models from files: transformers directories and GGUF (hub.py), with no hub access."""
