"""ONNX policy -> C99 for the Crazyflie firmware's app layer (imports onnx and numpy only)."""
