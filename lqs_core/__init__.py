"""lqs_core: learned quantization schemes for Keras 3."""
