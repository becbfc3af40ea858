"""absl apps that run keras_kd: `python -m launch.<app> --helpfull`."""

import os

# Set before TensorFlow is imported: hides its C++ start-up INFO lines.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")
