"""Serving an exported model without PyTorch: ONNX Runtime generation (ort_generate.py)."""
