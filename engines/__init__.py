"""emocam.engines: the shipped model (emocam.onnx, its torch program emocam.pt2) and its card, installed from the
repository's engines/ folder; ``emocam.default_model()`` gives its path."""
