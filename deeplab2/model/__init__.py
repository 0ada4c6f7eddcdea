"""Networks: layers, encoders, decoders, the DeepLab model and its builder."""
