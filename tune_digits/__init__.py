"""tune-digits: tune, compare and submit spectrogram CNNs for spoken digits."""

__version__ = "0.1.0"
