"""AutoDSNN: design and optimize Deep Shift Neural Networks for accuracy and energy."""

__version__ = "0.1.0"
