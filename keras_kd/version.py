"""The keras_kd release; part of every fingerprint of trained artifacts."""

__version__ = "0.5.0"
